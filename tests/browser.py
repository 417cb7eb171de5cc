"""Headless Chromium for the report tests: Debian's binary, the flags that keep it offline and
quiet, and the script that measures a loaded page's images, SVGs and banners."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def measure_script(banner_attr: str) -> str:
    """A page function returning its images (complete, natural width), its inline SVGs' boxes
    and the values of `data-<banner_attr>` on the elements that carry it."""
    return f"""() => ({{
  images: [...document.images].map(i => ({{complete: i.complete, width: i.naturalWidth}})),
  svgs: [...document.querySelectorAll('svg')].map(s => {{
    const r = s.getBoundingClientRect(); return {{width: r.width, height: r.height}};
  }}),
  banners: [...document.querySelectorAll('[data-{banner_attr}]')].map(b => b.dataset.{banner_attr}),
}})"""
