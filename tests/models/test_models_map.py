"""The map of the training side (``python -m models`` and docs/models.md) names every command and every release."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from edge.config import released_models
from models.__main__ import COMMANDS, RELEASES

REPO = Path(__file__).resolve().parents[2]


def cli_modules():
    """Every module of the ``models`` package that runs as ``python -m models.X`` or ``models.ROLE.X``."""
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "models").rglob("*.py")
                  if p.stem != "__main__" and re.search(r"^if __name__ == .__main__.:", p.read_text(), re.M))


def test_every_command_and_release_is_on_the_map():
    mapped = sorted(m for cmds in COMMANDS.values() for m, _ in cmds)
    assert mapped == cli_modules()
    released = set(released_models()) | set(released_models("classifier"))
    assert set(RELEASES) == released, "models/__main__.py RELEASES differs from the released folders"
    doc = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    for m in mapped:
        assert f"python -m {m} " in doc, f"docs/models.md gives no command line for {m}"
    for name in released:
        assert f"| `{name}` " in doc, f"docs/models.md's release table has no row for {name}"


def test_python_dash_m_models_prints_the_map():
    r = subprocess.run([sys.executable, "-m", "models", "--help"], cwd=str(REPO), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for m in cli_modules():
        assert f"python -m {m} " in r.stdout
    for name in RELEASES:
        assert f"  {name} " in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, models.__main__; assert 'torch' not in sys.modules"],
                       cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
