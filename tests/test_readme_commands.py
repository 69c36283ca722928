"""README.md's two commands and .ci/run install the same way (a venv, pinned torch) and run the same tests."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_and_ci_use_the_same_venv_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    # command 1: a venv made by the system's python3, everything else run from it (PEP 668 forbids the rest)
    cmd1 = next(ln for ln in readme.splitlines() if ln.startswith("apt-get update"))
    assert "python3 -m venv .venv" in cmd1 and ".venv/bin/pip install -e ." in cmd1
    assert ".venv/bin/maskwatch run" in cmd1 and "pip install" not in cmd1.replace(".venv/bin/pip install", "")
    # command 2 is .ci/run, which makes the same venv and runs the test command README gives
    assert "bash .ci/run" in readme
    assert 'VENV=${VENV:-.venv}' in ci and '-m venv "$VENV"' in ci and '. "$VENV/bin/activate"' in ci
    assert re.search(r"^python -m pytest -q$", ci, re.M) and "`python -m pytest -q`" in readme
    assert not re.search(r"\$PY -m pip|python3 -m pip", ci), "pip must run inside the venv"
    # one torch pin everywhere
    pins = set(re.findall(r"torch==([0-9.]+)", readme + ci + setup))
    assert len(pins) == 1, pins
