"""Headless Chromium for the report tests: Debian's binary, the flags that keep it offline and
quiet, the script that measures a loaded page's images, SVGs and banners, loading a page
with its console errors and requests noted, and what every rendered report must show."""

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


def load(browser, path: Path):
    """Open path in a new page; (page, console and page errors, URLs requested)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, fetched = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, problems, fetched


def assert_rendered_offline(path: Path, found: dict, problems: list, fetched: list) -> None:
    """No error, nothing fetched but the file itself, every image decoded, every SVG laid out."""
    assert problems == []
    assert fetched == [path.resolve().as_uri()]  # the file itself, nothing else
    assert all(i["complete"] and i["width"] > 0 for i in found["images"]), found["images"]
    assert all(s["width"] > 0 and s["height"] > 0 for s in found["svgs"]), found["svgs"]
