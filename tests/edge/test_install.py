"""scripts/install.sh: shellcheck, its refusal on a machine that is not a Jetson, and the files it writes,
staged for real under a temporary root (--root: apt, users, pip, systemctl and the engine build are
skipped there). Whether the X server of the auto-login session lets the service in (xhost
+SI:localuser:maskwatch) needs the Jetson's Xorg: Xvfb here rejects server-interpreted host entries."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import EXAMPLE_CONFIG, ModelConfig
from edge_helpers import REPO

INSTALL = REPO / "scripts" / "install.sh"
UNITS = ("maskwatch.service", "maskwatch-engine.service", "maskwatch-clocks.service")
# /etc/gdm3/custom.conf as Ubuntu 20.04 ships it
GDM_DEFAULT = """# GDM configuration storage
#
# See /usr/share/gdm/gdm.schemas for a list of available options.

[daemon]
# Uncomment the line below to force the login screen to use Xorg
#WaylandEnable=false

# Enabling automatic login
#  AutomaticLoginEnable = true
#  AutomaticLogin = user1

[security]

[xdmcp]

[chooser]

[debug]
# Uncomment the line below to turn on debugging
#Enable=true
"""


def install(*args, check=True):
    r = subprocess.run(["bash", str(INSTALL)] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_shellcheck_passes_on_every_script():
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck is not installed (apt shellcheck; .ci/run installs it)")
    scripts = sorted(str(p) for p in (REPO / "scripts").glob("*.sh"))
    assert str(INSTALL) in scripts
    r = subprocess.run([exe, "--severity=style"] + scripts, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_script_is_strict_and_documents_its_options():
    text = INSTALL.read_text()
    assert "set -euo pipefail" in text and text.startswith("#!/usr/bin/env bash")
    assert os.access(str(INSTALL), os.X_OK)
    r = install("--help")
    for opt in ("--precision fp16|int8", "--calib-dir", "--uninstall", "--purge", "--nvpmodel", "--jetson-clocks",
                "--autologin-user", "--parity-images"):
        assert opt in r.stdout, opt


def test_bad_options_are_refused_before_anything_happens(tmp_path):
    root = tmp_path / "root"
    for args, needle in ((["--precision", "fp32"], "fp16 or int8"), (["--precision", "int8"], "--calib-dir"),
                         (["--nvpmodel", "max"], "mode number"), (["--purge"], "--uninstall"),
                         (["--frobnicate"], "unknown option")):
        r = install(*args, "--root", root, check=False)
        assert r.returncode != 0 and needle in r.stderr, (args, r.stderr)
    assert not root.exists() or not any(root.iterdir())


@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="this is a Jetson: the installer would run")
def test_refuses_to_install_on_a_machine_that_is_not_a_jetson():
    before = Path("/etc/maskwatch").exists(), Path("/opt/maskwatch").exists()
    r = install(check=False)
    assert r.returncode == 1
    assert ("not a Jetson" in r.stderr) or ("run as root" in r.stderr), r.stderr
    assert "apt packages" not in r.stdout
    assert (Path("/etc/maskwatch").exists(), Path("/opt/maskwatch").exists()) == before


def staged_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc" / "gdm3").mkdir(parents=True)
    (root / "etc" / "gdm3" / "custom.conf").write_text(GDM_DEFAULT)
    return root


def test_staged_install_writes_config_units_display_and_is_idempotent(tmp_path):
    root = staged_root(tmp_path)
    r = install("--root", root, "--autologin-user", "alice", "--jetson-clocks", "--nvpmodel", "8")
    assert "[--root] skipped: apt-get install" in r.stdout and "[--root] skipped: nvpmodel -m 8" in r.stdout
    assert "[--root] skipped: maskwatch build-engine" in r.stdout
    # the config: the example with the TensorRT backend switched on, every comment kept
    cfg = root / "etc" / "maskwatch" / "config.yaml"
    example = EXAMPLE_CONFIG.read_text().splitlines()
    got = cfg.read_text().splitlines()
    changed = [(a, b) for a, b in zip(example, got) if a != b]
    assert len(got) == len(example)
    assert [b.split("#")[0].strip() for _, b in changed] == ["backend: tensorrt"]
    assert "backend: auto" in cfg.read_text()  # camera.backend untouched
    # units, the command, the docs
    for u in UNITS:
        assert (root / "etc" / "systemd" / "system" / u).read_text() == (REPO / "systemd" / u).read_text()
    link = root / "usr" / "local" / "bin" / "maskwatch"
    assert link.is_symlink() and os.readlink(str(link)) == "/opt/maskwatch/venv/bin/maskwatch"
    assert (root / "usr" / "share" / "doc" / "maskwatch" / "runtime.md").is_file()
    assert (root / "var" / "lib" / "maskwatch" / "engines").is_dir()
    # the display: autostart entry, its script, GDM auto-login under [daemon]
    desktop = (root / "etc" / "xdg" / "autostart" / "maskwatch-display.desktop").read_text()
    assert "Exec=/usr/local/lib/maskwatch/display-session.sh" in desktop
    script = root / "usr" / "local" / "lib" / "maskwatch" / "display-session.sh"
    assert os.access(str(script), os.X_OK) and "xhost +SI:localuser:maskwatch" in script.read_text()
    gdm = (root / "etc" / "gdm3" / "custom.conf").read_text()
    daemon = gdm.split("[daemon]")[1].split("[security]")[0]
    assert "AutomaticLoginEnable=true\nAutomaticLogin=alice\nWaylandEnable=false\n" in daemon
    assert "AutomaticLogin = user1" not in gdm and "#WaylandEnable" not in gdm
    assert (root / "etc" / "gdm3" / "custom.conf.maskwatch-orig").read_text() == GDM_DEFAULT

    # a re-install never overwrites the config and leaves every file as it was
    cfg.write_text(cfg.read_text().replace("volume: 0.8", "volume: 0.3"))
    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    r = install("--root", root, "--autologin-user", "alice")
    assert "exists: kept as it is" in r.stdout
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == snapshot
    assert "volume: 0.3" in cfg.read_text()


def test_installed_config_is_valid(tmp_path):
    if "tensorrt" not in str(ModelConfig.model_fields["backend"].annotation):
        pytest.skip("this package's config schema has no tensorrt backend yet")
    root = staged_root(tmp_path)
    install("--root", root, "--no-autologin")
    cfg = root / "etc" / "maskwatch" / "config.yaml"
    r = subprocess.run([sys.executable, "-m", "edge", "check-config", str(cfg)], cwd=str(REPO), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from edge.config import load
    c = load(cfg)
    assert c.model.backend == "tensorrt" and c.model.engine.precision == "fp16"
    assert (root / "etc" / "gdm3" / "custom.conf").read_text() == GDM_DEFAULT  # --no-autologin


def test_int8_install_records_precision_and_calibration_folder(tmp_path):
    if "precision:" not in EXAMPLE_CONFIG.read_text():
        pytest.skip("this package's config has no model.engine.precision yet")
    root = staged_root(tmp_path)
    calib = tmp_path / "calib & images"
    install("--root", root, "--no-autologin", "--precision", "int8", "--calib-dir", calib)
    text = (root / "etc" / "maskwatch" / "config.yaml").read_text()
    assert "    precision: int8 " in text and f'    calib_dir: "{calib}" ' in text


def test_uninstall_keeps_config_and_log_unless_purged(tmp_path):
    root = staged_root(tmp_path)
    install("--root", root, "--autologin-user", "alice")
    events = root / "var" / "lib" / "maskwatch" / "events.jsonl"
    events.write_text('{"type": "alarm"}\n')
    install("--root", root, "--uninstall")
    for u in UNITS:
        assert not (root / "etc" / "systemd" / "system" / u).exists()
    assert not (root / "usr" / "local" / "bin" / "maskwatch").exists()
    assert not (root / "etc" / "xdg" / "autostart" / "maskwatch-display.desktop").exists()
    assert not (root / "usr" / "local" / "lib" / "maskwatch").exists()
    assert (root / "etc" / "gdm3" / "custom.conf").read_text() == GDM_DEFAULT
    assert not (root / "etc" / "gdm3" / "custom.conf.maskwatch-orig").exists()
    assert (root / "etc" / "maskwatch" / "config.yaml").is_file() and events.is_file()
    install("--root", root, "--uninstall")  # twice is fine
    install("--root", root, "--uninstall", "--purge")
    assert not (root / "etc" / "maskwatch").exists() and not (root / "var" / "lib" / "maskwatch").exists()
