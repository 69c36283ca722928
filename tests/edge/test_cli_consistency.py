"""One command line: every subcommand that reads a config takes ``-c``, ``report`` shows today, the log and
``doctor`` name the model by name and version, ``doctor`` prints one summary and the speaker retry pause that
``run`` uses, the report chart counts in whole people, and the README demo's outputs are git-ignored."""
from __future__ import annotations

import argparse
import datetime
import io
import json
import shutil
import subprocess
import sys
import time

import pytest

from edge import doctor as D
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.cli import _parser
from edge.config import DEFAULT_MODEL, default_model_path, load
from edge.events import COUNT_CLASSES, HourlyCounts, report_figure
from edge.model import model_label
from edge_helpers import REPO, alsa_home, maskwatch_cmd, run_env, run_maskwatch, write_config


def doctor(args, home):
    """``python -m edge doctor ARGS`` as an installer runs it, but piped (no terminal) and without a display."""
    return subprocess.run([sys.executable, "-m", "edge", "doctor"] + [str(a) for a in args], cwd=str(REPO),
                          env=run_env(home), capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def subcommands():
    ap = _parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_subcommand_takes_dash_c():
    cmds = subcommands()
    assert {"run", "check-config", "bench", "report", "doctor", "build-engine", "check-parity"} <= set(cmds)
    for name, p in cmds.items():  # every one of them reads the config file
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"-c", "--config"} <= opts, f"maskwatch {name} has no -c/--config"


def test_check_config_takes_the_file_with_dash_c_or_as_argument(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("alarm:\n  volume: 0.5\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("alarm:\n  volume: 5\n", encoding="utf-8")
    for args in (["-c", good], ["--config", good], [good]):
        r = run_maskwatch(["check-config"] + args, home=tmp_path, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == f"{good}: OK", (args, r.stdout, r.stderr)
    r = run_maskwatch(["check-config", "-c", bad], home=tmp_path, timeout=120)
    assert r.returncode == 2 and f"{bad}: INVALID" in r.stderr and "alarm.volume (line 2)" in r.stderr
    r = run_maskwatch(["check-config"], home=tmp_path, timeout=120)
    assert r.returncode == 2 and "check-config -c FILE" in r.stderr
    r = run_maskwatch(["check-config", good, "-c", bad], home=tmp_path, timeout=120)
    assert r.returncode == 2 and "give one" in r.stderr


def test_report_without_day_shows_today(tmp_path):
    now = time.time()
    counts = HourlyCounts(tmp_path / "counts.jsonl")
    for cls in ("mask", "no_mask", "mask"):
        counts.add(cls, now, now=now)
    counts.add("mask", now - 3 * 86400, now=now - 3 * 86400)  # another day: not in today's report
    counts.flush()
    (tmp_path / "events.jsonl").write_text("", encoding="utf-8")
    r = subprocess.run(maskwatch_cmd() + ["report", "--events", str(tmp_path / "events.jsonl"), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    today = datetime.date.fromtimestamp(now).isoformat()
    if rep["day"] != today:  # the test ran across midnight
        pytest.skip("midnight passed during the test")
    assert rep["total"] == {"mask": 2, "no_mask": 1, "mask_incorrect": 0}
    assert rep["current_hour"] == datetime.datetime.fromtimestamp(now).strftime("%H")


def test_report_chart_axes_are_whole_numbers():
    plt = pytest.importorskip("matplotlib.pyplot")
    for people in ({"09": {"no_mask": 1}, "10": {"mask": 2}},   # a few people: matplotlib's own steps are 0.25
                   {"12": {"mask": 37, "no_mask": 4}},           # a busy hour
                   {}):                                         # nobody
        rep = {"day": "2026-03-04", "alarms": 0, "total": {},
               "hours": {f"{h:02d}": {c: people.get(f"{h:02d}", {}).get(c, 0) for c in COUNT_CLASSES}
                         for h in range(24)}}
        fig = report_figure(rep, plt)
        try:
            ax = fig.axes[0]
            lo, hi = ax.get_ylim()
            yt = [t for t in ax.get_yticks() if lo - 1e-9 <= t <= hi + 1e-9]
            assert len(yt) >= 2 and all(float(t).is_integer() for t in yt), (people, yt)
            assert list(ax.get_xticks()) == list(range(24))
        finally:
            plt.close(fig)


def test_model_label_is_release_name_and_version(tmp_path):
    meta = OnnxRuntimeBackend(default_model_path()).meta
    assert model_label(default_model_path(), meta) == f"{DEFAULT_MODEL} {meta.version}"
    assert model_label(tmp_path / "mine.onnx", meta) == f"mine {meta.version}"


def test_run_log_names_the_model_by_name_and_version(tmp_path, videos):
    path = default_model_path()
    version = OnnxRuntimeBackend(path).meta.version
    r = run_maskwatch(["run", "--source", videos["masked_woman"], "--headless", "--fast", "--max-frames", "3",
                       "--events", tmp_path / "e.jsonl"], home=alsa_home(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"running: model {DEFAULT_MODEL} {version} (onnxruntime)" in r.stderr, r.stderr[-2000:]
    assert "model model.onnx" not in r.stderr


def test_doctor_prints_one_summary_and_names_the_model(tmp_path, videos):
    """Piped (as here, or in a log), the only output is the table: no second list of rows on stderr."""
    cfg = write_config(tmp_path / "c.yaml", default_model_path(DEFAULT_MODEL),
                       f"events:\n  path: {tmp_path / 'ev.jsonl'}\n")
    version = OnnxRuntimeBackend(default_model_path()).meta.version
    r = doctor(["-c", cfg, "--source", videos["unmasked"], "--seconds", "1", "--no-sound"], tmp_path)
    lines = (r.stdout + r.stderr).splitlines()
    for row in ("config", "camera", "model", "engine", "display", "speaker", "disk", "jtop", "clock", "service"):
        assert sum(1 for ln in lines if ln.startswith(row + " ")) == 1, (row, r.stdout, r.stderr)
    assert sum("check(s) failed" in ln or "all required checks passed" in ln for ln in lines) == 1
    model_row = next(ln for ln in lines if ln.startswith("model "))
    assert f"{DEFAULT_MODEL} {version} (onnxruntime" in model_row, model_row
    assert r.stderr.strip() == "", r.stderr


def test_terminal_progress_leaves_no_line_behind():
    out = io.StringIO()
    p = D.TerminalProgress(out)
    p(D.Check("camera", D.PASS, "ok"))
    p(D.Check("model", D.FAIL, "no"))
    p.clear()
    text = out.getvalue()
    assert "\n" not in text and text.endswith("\r\x1b[K") and "model FAIL" in text


@pytest.mark.parametrize("extra, seconds", [("", 30), ("alarm:\n  audio_retry_s: 45\n", 45)])
def test_doctor_speaker_row_gives_the_retry_pause_run_uses(tmp_path, extra, seconds):
    """``run`` retries a dead speaker every ``alarm.audio_retry_s`` (30 s by default); the doctor says the same."""
    cfg = write_config(tmp_path / "c.yaml", default_model_path(), extra)
    assert load(str(cfg)).alarm.audio_retry_s == seconds
    home = alsa_home(tmp_path, "{ type hw card 99 }")  # an ALSA device that does not exist
    r = doctor(["-c", cfg, "--source", tmp_path / "no-clip.mp4", "--json"], home)
    row = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["speaker"]
    assert row["status"] == "FAIL" and f"retrying every {seconds} s" in row["detail"], row


def test_demo_outputs_are_git_ignored(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = ["events.jsonl", "counts.jsonl", "annotated.mp4"]
    r = subprocess.run(["git", "check-ignore"] + names, cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == names, r.stdout + r.stderr
