"""`maskwatch doctor` on this x86 machine, for real: a shared video stands in for the camera, the released
model loads, an ALSA null device plays the chime, Xvfb is the display; the Jetson-only rows say
"not a Jetson". A failing row carries its fix and a failing required row makes the exit code 1."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge import doctor as D
from edge.config import Config, parse
from edge.sources import jetson_model
from edge_helpers import REPO, alsa_home, run_env, write_config
from test_display import xvfb  # noqa: F401  (a real X server fixture)

ROWS = ["config", "camera", "model", "engine", "display", "speaker", "disk", "mqtt", "jtop", "clock", "service"]


def doctor(args, home, timeout=600, **env):
    """``python -m edge doctor ARGS`` in a clean environment (no DISPLAY, HOME with the given .asoundrc)."""
    return subprocess.run([sys.executable, "-m", "edge", "doctor"] + [str(a) for a in args], cwd=str(REPO),
                          env=run_env(home, **env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def rows(proc):
    data = json.loads(proc.stdout)
    return data, {c["name"]: c for c in data["checks"]}


@pytest.fixture(scope="module")
def not_jetson():
    if jetson_model() is not None:
        pytest.skip("these expectations are for a machine that is not a Jetson")


def test_doctor_on_x86_without_a_display_fails_the_display_row(tmp_path, model_path, videos, not_jetson):
    cfg = write_config(tmp_path / "c.yaml", model_path, f"events:\n  path: {tmp_path / 'ev.jsonl'}\n")
    p = doctor(["-c", cfg, "--source", videos["unmasked"], "--json"], alsa_home(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    data, r = rows(p)
    assert [c["name"] for c in data["checks"]] == ROWS and data["ok"] is False
    assert "not a Jetson" in data["machine"]
    assert r["config"]["status"] == "PASS" and str(cfg) in r["config"]["detail"]
    cam = r["camera"]
    assert cam["status"] == "PASS", cam
    assert "1280x720" in cam["detail"] and "fps over" in cam["detail"] and "(target 25)" in cam["detail"]
    assert r["model"]["status"] == "PASS" and "ms per inference" in r["model"]["detail"]
    assert r["engine"]["status"] == "SKIP" and "not a Jetson" in r["engine"]["detail"]
    assert r["jtop"]["status"] == "SKIP" and "not a Jetson" in r["jtop"]["detail"]
    assert r["display"]["status"] == "FAIL" and "DISPLAY" in r["display"]["detail"]
    assert "DISPLAY=:0" in r["display"]["fix"]
    assert r["speaker"]["status"] == "PASS" and "alarm.wav" in r["speaker"]["detail"]
    assert r["disk"]["status"] == "PASS" and "GiB free" in r["disk"]["detail"]
    # no systemd here: optional rows warn (or pass), they never fail the run off the Jetson
    for name in ("clock", "service"):
        assert r[name]["status"] in ("PASS", "WARN"), r[name]
        assert r[name]["status"] == "PASS" or r[name]["fix"]


def test_doctor_all_required_rows_pass_under_xvfb_with_a_table(tmp_path, model_path, videos, xvfb, not_jetson):
    cfg = write_config(tmp_path / "c.yaml", model_path, f"events:\n  path: {tmp_path / 'ev.jsonl'}\n")
    p = doctor(["-c", cfg, "--source", videos["masked_woman"]], alsa_home(tmp_path), DISPLAY=xvfb)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert out.splitlines()[0].startswith("maskwatch doctor (") and "not a Jetson" in out.splitlines()[0]
    table = {line.split()[0]: line.split()[1] for line in out.splitlines()[3:3 + len(ROWS)]}
    assert list(table) == ROWS
    assert table["display"] == "PASS" and f"{xvfb}: x11, 1024x768" in out
    assert table["camera"] == "PASS" and table["speaker"] == "PASS" and table["engine"] == "SKIP"
    assert out.rstrip().endswith("all required checks passed")


def test_doctor_reports_a_broken_config_a_missing_camera_and_a_dead_speaker(tmp_path, not_jetson):
    bad = tmp_path / "bad.yaml"
    bad.write_text("alarm:\n  volume: 7\n", encoding="utf-8")
    home = alsa_home(tmp_path, "{ type hw card 99 }")  # an ALSA device that does not exist
    p = doctor(["-c", bad, "--source", tmp_path / "no-such-clip.mp4", "--json"], home)
    assert p.returncode == 1
    _, r = rows(p)
    assert r["config"]["status"] == "FAIL" and "alarm.volume (line 2)" in r["config"]["detail"]
    assert "maskwatch check-config" in r["config"]["fix"]
    assert r["camera"]["status"] == "FAIL" and "no such video file" in r["camera"]["detail"]
    assert "v4l2-ctl --list-devices" in r["camera"]["fix"]
    assert r["speaker"]["status"] == "FAIL" and "aplay -l" in r["speaker"]["fix"]
    assert r["model"]["status"] == "PASS"  # the built-in defaults still load the released model


def test_no_sound_skips_the_speaker(tmp_path, model_path, videos):
    cfg = write_config(tmp_path / "c.yaml", model_path)
    p = doctor(["-c", cfg, "--source", videos["unmasked"], "--no-sound", "--seconds", "1", "--json"],
               alsa_home(tmp_path))
    _, r = rows(p)
    assert r["speaker"]["status"] == "SKIP"


def test_speaker_asks_when_interactive(tmp_path):
    """The question is asked through the given function (the CLI passes input() only on a terminal)."""
    code = ("import sys; from edge.config import Config; from edge.doctor import check_speaker; "
            "asked = []; ans = sys.argv[1]; "
            "c = check_speaker(Config(), ask=lambda q: asked.append(q) or ans); "
            "print(c.status, len(asked), c.detail)")
    for answer, status in (("y", "PASS"), ("n", "FAIL")):
        r = subprocess.run([sys.executable, "-c", code, answer], cwd=str(REPO), env=run_env(alsa_home(tmp_path)),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        got, n_asked, detail = r.stdout.split(" ", 2)
        assert (got, n_asked) == (status, "1")
        assert ("not heard" in detail) == (status == "FAIL")


def test_disk_row_threshold(tmp_path):
    ok = D.check_disk(tmp_path / "state" / "maskwatch", min_free_mb=1)
    assert ok.status == "PASS" and "not created yet" in ok.detail
    full = D.check_disk(tmp_path, min_free_mb=1e12)
    assert full.status == "FAIL" and "journalctl --vacuum-size" in full.fix


def test_clock_row_is_required_only_with_quiet_hours():
    synced, how = D.clock_synchronised()
    plain = D.check_clock(Config())
    quiet = D.check_clock(parse("alarm:\n  quiet_hours: ['22:00-06:00']\n"))
    if synced:
        assert plain.status == quiet.status == "PASS"
    else:
        assert plain.status == "WARN" and quiet.status == "FAIL" and "timedatectl set-time" in quiet.fix
    assert how in plain.detail


def test_service_and_jtop_rows_off_the_jetson(not_jetson):
    assert D.check_jtop(None).status == "SKIP"
    assert D.check_engine(Config(), None).status == "SKIP"
    s = D.check_service(None)
    assert s.status in ("PASS", "WARN") and "maskwatch.service" in s.detail


def test_table_lists_fixes_and_the_verdict():
    rep = D.Report([D.Check("camera", "PASS", "ok"), D.Check("display", "FAIL", "none", "set DISPLAY"),
                    D.Check("clock", "WARN", "unsynced", "timedatectl"), D.Check("engine", "SKIP", "not a Jetson")],
                   "x86_64, not a Jetson")
    text = D.format_table(rep)
    assert "display  FAIL    none" in text and "  display (FAIL): set DISPLAY" in text
    assert "  clock (WARN): timedatectl" in text and "engine (SKIP)" not in text
    assert text.endswith("1 required check(s) failed") and rep.exit_code == 1
    assert D.Report([D.Check("camera", "PASS", "ok")], "m").exit_code == 0


def test_engine_row_reads_the_sidecar_and_the_parity_report(tmp_path, model_path):
    """The engine row's file logic on real files: the released model, an engine file with the sidecar
    build-engine writes (its bytes are not a TensorRT engine: the row never loads it), parity.json."""
    import os
    import time

    eng = pytest.importorskip("edge.engine")
    from edge.model import ModelMeta
    folder = tmp_path / "engines"
    folder.mkdir()
    ok, detail = D.engine_status(model_path, folder, "fp16", device="NVIDIA Jetson Xavier NX Developer Kit")
    assert not ok and detail.startswith("not built")
    key = eng.engine_key(model_path, "8.5.2.2", "fp16", device="NVIDIA Jetson Xavier NX Developer Kit")
    engine_file = eng.engine_path(folder, model_path, key)
    engine_file.write_bytes(b"serialized engine bytes")
    eng.write_sidecar(engine_file, key, ModelMeta(), model_path)
    ok, detail = D.engine_status(model_path, folder, "fp16", device=key.device)
    assert not ok and "TensorRT 8.5.2.2" in detail and "parity not checked" in detail
    assert not D.engine_status(model_path, folder, "int8", device=key.device)[0]          # other precision
    assert not D.engine_status(model_path, folder, "fp16", device="cpu-x86_64")[0]        # other device
    report = folder / "parity.json"
    report.write_text(json.dumps({"passed": True, "images": 60, "precision": "fp16", "model": str(model_path),
                                  "failures": []}))
    ok, detail = D.engine_status(model_path, folder, "fp16", device=key.device)
    assert ok and detail.endswith("parity passed on 60 images"), detail
    report.write_text(json.dumps({"passed": False, "images": 60, "precision": "fp16", "model": str(model_path),
                                  "failures": ["coverage: max abs diff 0.2 > 0.05"]}))
    ok, detail = D.engine_status(model_path, folder, "fp16", device=key.device)
    assert not ok and "parity FAILED" in detail and "0.2 > 0.05" in detail
    report.write_text(json.dumps({"passed": True, "images": 60, "precision": "fp16", "model": str(model_path)}))
    old = time.time() - 3600
    os.utime(str(report), (old, old))  # checked before the engine was (re)built
    ok, detail = D.engine_status(model_path, folder, "fp16", device=key.device)
    assert not ok and "since the engine was built" in detail


@pytest.mark.jetson
def test_doctor_on_the_jetson_checks_the_jetson_rows(tmp_path):
    if jetson_model() is None:
        pytest.skip("needs a Jetson")
    p = doctor(["--no-sound", "--json"], alsa_home(tmp_path))
    data, r = rows(p)
    assert "not a Jetson" not in data["machine"]
    for name in ("engine", "jtop"):
        assert "not a Jetson" not in r[name]["detail"], r[name]
    assert r["camera"]["status"] == "PASS", r["camera"]
