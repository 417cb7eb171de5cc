"""The HTML report in a real browser: headless Chromium (Debian's) driven by Playwright.

Every <img> decodes, every inline <svg> has a size on the page, nothing is logged as an
error, and a full-page screenshot is kept (in tmp_path, and in $GRADPROBE_SCREENSHOT_DIR
when set). A fetch of anything but the file itself fails the test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gradprobe.viz.report import write_report
from tests.browser import ARGS, CHROMIUM, assert_rendered_offline, load, measure_script
from tests.report_runs import train_run, train_trio

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright (Python) is not installed: pip install playwright"
)
pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="Debian's chromium is not at /usr/bin/chromium (apt install)"
)
MEASURE = measure_script("status")  # what the page reports once loaded


def _train(run_dir: Path, activation: type, interrupt_at: int | None = None) -> Path:
    return train_run(run_dir, activation, steps=20, interrupt_at=interrupt_at, batch=32)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = train_trio(root, _train, interrupted="tanh")
    # one SVG line plot and one PNG heatmap are enough next to the full comparison
    figures = ["speed_lines", "speed_heatmap"]
    return {
        "compare": write_report([runs["sigmoid"], runs["relu"]], root / "compare.html"),
        "interrupted": write_report(root / "tanh", root / "tanh.html", figures=figures),
    }


@pytest.mark.parametrize("name", ["compare", "interrupted"])
def test_report_renders_in_chromium(reports, name, tmp_path):
    path = reports[name]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page, problems, fetched = load(browser, path)
            found = page.evaluate(MEASURE)
            shot = tmp_path / f"report-{name}.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert_rendered_offline(path, found, problems, fetched)
    if name == "compare":
        assert len(found["svgs"]) + len(found["images"]) >= 4 and found["banners"] == []
    else:
        assert len(found["svgs"]) == len(found["images"]) == 1
        assert found["banners"] == ["interrupted"]
    assert shot.stat().st_size > 10_000
    if os.environ.get("GRADPROBE_SCREENSHOT_DIR"):
        keep = Path(os.environ["GRADPROBE_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / shot.name)
