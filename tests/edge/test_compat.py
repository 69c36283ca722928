"""edge/ runs on Python 3.8 (JetPack 5) and never imports torch or the training package."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import pytest

from edge_helpers import REPO

EDGE = REPO / "edge"


def test_vermin_python38():
    exe = shutil.which("vermin")
    cmd = [exe] if exe else [sys.executable, "-m", "vermin"]
    r = subprocess.run(cmd + ["-t=3.8-", "--no-tips", "--violations", "--eval-annotations", str(EDGE)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named vermin" in r.stderr:
        pytest.fail("vermin is not installed (pip install -e .[dev])")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Minimum required versions: 3.8" in r.stdout, r.stdout


def test_every_module_has_future_annotations():
    for p in sorted(EDGE.rglob("*.py")):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
        assert any(a.name == "annotations" for f in futures for a in f.names), f"{p} lacks future annotations"


def test_edge_never_imports_torch_or_models():
    code = ("import sys, edge.cli, edge.pipeline, edge.bench, edge.display, edge.audio, edge.events; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'torchvision')); "
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    for p in EDGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert n.split(".")[0] not in ("torch", "models"), f"{p} imports {n}"
