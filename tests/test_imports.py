"""`import gradprobe` stays light, and every package imports only what DESIGN.md allows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("matplotlib", "tensorboard", "ray", "jinja2", "typer", "rich")
ROOT = Path(__file__).resolve().parents[1] / "gradprobe"

# package -> gradprobe packages it may import (DESIGN.md, "Layers and what each may import")
ALLOWED = {
    "stats": {"stats"},
    "probe": {"probe", "stats"},
    "record": {"record", "stats", "_version"},
    "diagnose": {"diagnose", "record", "probe", "stats"},
    "theory": {"theory"},
    "lab": {"lab", "diagnose", "theory", "record", "probe", "stats", "attach", "_version"},
    "viz": {"viz", "diagnose", "theory", "record", "stats", "_version"},
    "integrations": {"integrations", "probe", "record", "stats", "attach", "_version"},
}


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_gradprobe_loads_no_heavy_module():
    code = (
        "import sys, gradprobe\n"
        "gradprobe.watch, gradprobe.Record, gradprobe.load, gradprobe.Finding\n"
        "gradprobe.diagnose, gradprobe.check, gradprobe.gradcheck\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert _run(code) == ""


def test_version_and_record_reading_need_no_torch():
    code = "import sys, gradprobe, gradprobe.record; print('torch' in sys.modules)"
    assert _run(code) == "False"


def _gradprobe_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gradprobe" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_downward(package):
    for path in (ROOT / package).rglob("*.py"):
        extra = _gradprobe_imports(path) - ALLOWED[package]
        assert not extra, f"{path.name} imports gradprobe.{extra} (allowed: {ALLOWED[package]})"


def test_gp_diagnose_stays_callable_after_its_submodules_are_imported():
    # Python sets the package gradprobe.diagnose as an attribute of gradprobe when any of
    # its submodules is imported; gp.diagnose(rec) must still work.
    code = (
        "import numpy as np, gradprobe as gp\n"
        "gp.Finding\n"
        "import gradprobe.diagnose.lints\n"
        "rec = gp.Record(['a', 'b'], np.arange(3), values={'delta_norm': np.ones((3, 2))})\n"
        "print(gp.diagnose(rec), gp.diagnose is gradprobe.diagnose)"
    )
    assert _run(code) == "[] True"
