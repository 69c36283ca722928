"""Config files that used to crash ``check-config`` with a traceback and kill the daemon on SIGHUP: every
one is now a clear, bounded error with its line; an empty file is refused on reload; the files the config
names are checked; a big file is refused before it is parsed; a reload never stops the frame loop."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from edge import config as C
from edge_helpers import DAEMON_BASE as BASE, LogReader, REPO, alsa_home, maskwatch_cmd, run_env, sigterm, write_config


def _bomb() -> str:
    """The 'billion laughs' alias bomb: 9 levels of 9 aliases each (9**9 values once expanded)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# (name, text, substrings of the error, line or None)
HOSTILE = [
    ("python object tag", "alarm:\n  sound: !!python/object:os.system {}\n", ["python/object", "constructor"], 2),
    ("list as mapping key", "alarm:\n  ? [a, b]\n  : 1\n", ["a key must be a plain name, not a list"], 2),
    ("recursive alias", "camera: &a\n  x: *a\n", ["recursive alias"], 1),
    ("nesting 10000 deep", "a: " + "[" * 10000 + "]" * 10000 + "\n", ["nested more than"], 1),
    ("bad timestamp", "camera:\n  source: !!timestamp 2020-13-45\n", ["timestamp", "month must be in 1..12"], 2),
    ("alias bomb", _bomb(), ["expands to more than"], None),
    ("too many aliases", "a: &a 1\nb: [" + ",".join(["*a"] * 150) + "]\n", ["more than 100 aliases"], 2),
]


@pytest.mark.parametrize("name, text, needles, line", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_yaml_is_a_config_error_with_its_line(name, text, needles, line):
    with pytest.raises(C.ConfigError) as ei:
        C.parse(text, "x.yaml")
    msg = str(ei.value)
    for n in needles:
        assert n in msg, msg
    if line is not None:
        assert f"line {line}" in msg, msg
    assert all(len(e) <= C.MAX_ERROR_CHARS for e in ei.value.errors)


def test_alias_bomb_is_small_and_refused_without_expanding():
    text = _bomb()
    assert len(text) < 500
    with pytest.raises(C.ConfigError, match="expands to more than"):
        C.parse(text)


def test_error_lines_are_bounded():
    with pytest.raises(C.ConfigError) as ei:
        C.parse("camera:\n  width: " + "x" * 60000 + "\n")
    assert ei.value.errors[0].startswith("camera.width (line 2)")
    assert max(len(e) for e in ei.value.errors) <= C.MAX_ERROR_CHARS
    assert len(str(ei.value)) < 1000
    many = "\n".join(f"k{i}: 1" for i in range(100)) + "\n"
    with pytest.raises(C.ConfigError) as ei:
        C.parse(many)
    assert len(ei.value.errors) == C.MAX_ERRORS + 1 and "70 more" in ei.value.errors[-1]


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("# padding\n" * (C.MAX_CONFIG_BYTES // 10 + 10), encoding="utf-8")
    with pytest.raises(C.ConfigError, match=f"the most a config may have is {C.MAX_CONFIG_BYTES}"):
        C.load(p)


def test_empty_file_refused_only_when_asked_and_braces_mean_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# only a comment\n\n", encoding="utf-8")
    assert C.load(p) == C.Config()
    with pytest.raises(C.ConfigError, match="refusing to reset"):
        C.load(p, allow_empty=False)
    p.write_text("{}\n", encoding="utf-8")
    assert C.load(p, allow_empty=False) == C.Config()


def test_referenced_files_are_checked_with_their_lines(tmp_path):
    text = f"model:\n  path: {tmp_path}/gone.onnx\nalarm:\n  sound: {tmp_path}/gone.wav\n"
    assert C.parse(text).model.path.endswith("gone.onnx")  # the schema alone accepts it
    with pytest.raises(C.ConfigError) as ei:
        C.parse(text, check_files=True)
    assert ei.value.errors == [f"model.path (line 2): '{tmp_path}/gone.onnx': cannot open the model: No such file "
                               "or directory",
                               f"alarm.sound (line 4): '{tmp_path}/gone.wav': cannot open the sound: No such file or "
                               "directory"]


def _check(path):
    return subprocess.run(maskwatch_cmd() + ["check-config", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_check_config_never_prints_a_traceback(tmp_path):
    files = {h[0]: h[1] for h in HOSTILE}
    files["missing model"] = f"model:\n  path: {tmp_path}/gone.onnx\n"
    files["huge value"] = "camera:\n  width: " + "x" * 60000 + "\n"
    for name, text in files.items():
        p = tmp_path / (name.replace(" ", "_") + ".yaml")
        p.write_text(text, encoding="utf-8")
        r = _check(p)
        assert r.returncode == 2, (name, r.stdout, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and "INVALID" in r.stderr, (name, r.stderr[-2000:])
        assert max(len(line) for line in r.stderr.splitlines()) <= C.MAX_ERROR_CHARS + 2 + len(str(p)), name
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    r = _check(empty)
    assert r.returncode == 0 and "OK (empty" in r.stdout




def test_sighup_with_hostile_files_keeps_the_daemon_and_its_config(tmp_path, model_path):
    cfg = write_config(tmp_path / "c.yaml", model_path, BASE)
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--headless", "--events",
                                               str(tmp_path / "events.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    bad = [h[1] for h in HOSTILE] + [
        "# the admin emptied the file\n",
        f"model:\n  path: {tmp_path}/gone.onnx\n",
        f"model:\n  path: {model_path}\nalarm:\n  sound: {tmp_path}/gone.wav\n",
        "# padding\n" * (C.MAX_CONFIG_BYTES // 10 + 10),
    ]
    try:
        log.expect("running: model")
        for n, text in enumerate(bad, 1):
            cfg.write_text(text, encoding="utf-8")
            proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 120
            while log.text.count("config reload failed; keeping the running config") < n and \
                    time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            assert log.text.count("config reload failed; keeping the running config") == n, log.text[-3000:]
            assert proc.poll() is None, f"file {n} stopped the daemon:\n{log.text[-3000:]}"
        assert "Traceback" not in log.text, log.text[-3000:]
        assert "refusing to reset" in log.text and "cannot open the model: No such file" in log.text
        assert "cannot open the sound: No such file" in log.text
        # the running config was kept: a good file still changes only what differs from it
        write_config(cfg, model_path, BASE.replace("cooldown_s: 10", "cooldown_s: 4"))
        proc.send_signal(signal.SIGHUP)
        log.expect("changed: alarm.cooldown_s\n")
    finally:
        rc = sigterm(proc, log)
    assert rc == 0, log.text[-3000:]


def test_a_reload_is_parsed_off_the_frame_loop(tmp_path, backend, videos):
    """The largest file allowed, of the slowest kind to parse (tens of thousands of small tokens): frames keep
    being processed while it is read and refused (before, the loop stood still for the whole parse)."""
    import logging
    import threading

    from edge.config import Config
    from edge.pipeline import Pipeline, RunOptions, with_overrides
    from edge.sources import OpenCVSource

    class Cam(OpenCVSource):  # the shared clip read like a live camera
        def __init__(self):
            super().__init__(str(videos["unmasked"]), "file")
            self.live, self.fps = True, 25.0

        def read(self):
            time.sleep(0.02)
            return super().read()

    path = tmp_path / "big.yaml"
    path.write_text("zone:\n  polygon: [" + ",".join(["[1.5, 0.2]"] * ((C.MAX_CONFIG_BYTES - 40) // 11)) + "]\n")
    assert C.MAX_CONFIG_BYTES - 200 < path.stat().st_size <= C.MAX_CONFIG_BYTES
    cfg = with_overrides(Config(), headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.ready_timeout_s = 0
    pipe = Pipeline(cfg, RunOptions(max_frames=150, sound=False, config_path=str(path)), backend=backend,
                    source=Cam())
    marks = {}

    class Mark(logging.Handler):
        def emit(self, record):
            if "config reload failed" in record.getMessage():
                marks.setdefault("done", pipe.result.frames)

    def hup():
        while pipe.result.frames < 20:
            time.sleep(0.005)
        marks["asked"] = pipe.result.frames
        pipe.request_reload()

    handler = Mark()
    logging.getLogger("edge.pipeline").addHandler(handler)
    try:
        threading.Thread(target=hup, daemon=True).start()
        res = pipe.run()
    finally:
        logging.getLogger("edge.pipeline").removeHandler(handler)
    assert res.frames == 150 and "done" in marks, marks
    # the loop may finish the frame it is on when the signal comes; after that, a blocked loop does nothing
    assert marks["done"] - marks["asked"] >= 3, f"the frame loop stood still while the file was parsed: {marks}"
