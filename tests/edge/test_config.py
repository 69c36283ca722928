"""Config schema and loader: defaults, the shipped example, and line-numbered errors."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from edge import config as C
from edge_helpers import maskwatch_cmd, REPO

# (name, YAML text, substrings every one of which must appear in the error, line number or None)
BROKEN = [
    ("wrong type", "camera:\n  width: wide\n", ["camera.width", "valid integer", "'wide'"], 2),
    ("unknown top key", "log_level: INFO\ncamrea:\n  width: 640\n", ["camrea", "known keys: log_level, camera"], 2),
    ("unknown nested key", "alarm:\n  cooldown: 5\n", ["alarm.cooldown", "known keys:", "cooldown_s"], 2),
    ("below range", "alarm:\n  enabled: true\n  cooldown_s: -5\n", ["alarm.cooldown_s", ">= 0", "<= 3600"], 3),
    ("above range", "alarm:\n  volume: 1.5\n", ["alarm.volume", "less than or equal to 1"], 2),
    ("bad literal", "log_level: LOUD\n", ["log_level", "'DEBUG', 'INFO', 'WARNING'", "'LOUD'"], 1),
    ("bad list item", "alarm:\n  classes:\n    - no_mask\n    - hat\n", ["alarm.classes[1]", "'no_mask'",
                                                                         "'mask_incorrect'"], 4),
    ("bad YAML", "camera:\n  width: [1280\n  height: 720\n", ["YAML syntax error", "line"], None),
    ("tab indentation", "camera:\n\twidth: 1280\n", ["YAML syntax error", "line 2"], None),
    ("not a mapping", "- camera\n- model\n", ["must be a mapping", "known keys"], 1),
    ("section is a scalar", "tracker: 5\n", ["tracker", "a mapping with keys high_score"], 1),
    ("bad quiet hours", "alarm:\n  quiet_hours: ['22:00-25:00']\n", ["alarm.quiet_hours", "HH:MM-HH:MM"], 2),
    ("zone point outside", "zone:\n  polygon: [[0, 0], [1.5, 0], [1, 1]]\n", ["zone.polygon", "0-1"], 2),
    ("zone too few points", "zone:\n  polygon: [[0, 0], [1, 1]]\n", ["zone.polygon", "at least 3"], 2),
    ("min above max", "zone:\n  min_face_frac: 0.5\n  max_face_frac: 0.1\n", ["zone", "must be > min_face_frac"], 1),
    ("duplicate key", "alarm:\n  volume: 0.5\n  volume: 0.7\n", ["alarm.volume", "duplicate key"], 3),
    ("bad threshold key", "model:\n  thresholds:\n    nomask: 0.5\n", ["model.thresholds.nomask",
                                                                         "known keys: mask, no_mask"], 3),
]


@pytest.mark.parametrize("name, text, needles, line", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_key_line_and_allowed(tmp_path, name, text, needles, line):
    p = tmp_path / "broken.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(C.ConfigError) as ei:
        C.load(p)
    msg = str(ei.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, f"{name}: {n!r} missing from:\n{msg}"
    if line is not None:
        assert f"(line {line})" in msg, msg


def test_all_errors_reported_at_once():
    with pytest.raises(C.ConfigError) as ei:
        C.parse("camera:\n  width: 1\n  height: 1\nalarm:\n  volume: 9\n")
    lines = ei.value.errors
    assert len(lines) == 3
    assert [re.search(r"\(line (\d+)\)", e).group(1) for e in lines] == ["2", "3", "5"]


def test_empty_file_and_none_give_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing\n", encoding="utf-8")
    assert C.load(p) == C.Config() == C.load(None)
    assert C.Config().camera.source == "/dev/video0"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(C.ConfigError, match="cannot read"):
        C.load(tmp_path / "nope.yaml")


def _keys(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def test_example_config_documents_every_key_with_its_defaults():
    text = C.EXAMPLE_CONFIG.read_text(encoding="utf-8")
    example = C.parse(text, C.EXAMPLE_CONFIG)
    assert example == C.Config(), "config.example.yaml must show the built-in defaults"
    assert _keys(yaml.safe_load(text)) == _keys(C.Config().model_dump()), "example must list every key"
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            assert "#" in line, f"config.example.yaml line {n} has no comment: {line!r}"


def test_example_config_ships_with_the_package():
    assert C.EXAMPLE_CONFIG.parent.name == "edge" and C.EXAMPLE_CONFIG.is_file()
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    assert '"*.yaml"' in setup and '"assets/*"' in setup


def test_every_field_has_description_and_default():
    def walk(model, path):
        for name, f in model.model_fields.items():
            assert f.description, f"{path}{name} has no description"
            assert not f.is_required(), f"{path}{name} has no default"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, C.BaseModel):
                walk(ann, f"{path}{name}.")
    walk(C.Config, "")


def test_default_model_path_is_inside_the_package():
    p = C.default_model_path()
    assert p.parts[-4:] == ("models", "released", C.DEFAULT_MODEL, "model.onnx") and p.is_file()
    assert C.Config().model.resolved_path() == p


def test_model_is_chosen_by_released_name_or_path(tmp_path):
    names = C.released_models()
    assert "detectnet_v2_r18" in names and C.DEFAULT_MODEL in names
    for n in names:
        cfg = C.parse(f"model:\n  path: {n}\n")
        assert cfg.model.resolved_path() == C.default_model_path(n) and cfg.model.resolved_path().is_file()
    onnx = tmp_path / "mine.onnx"
    assert C.parse(f"model:\n  path: {onnx}\n").model.resolved_path() == onnx
    with pytest.raises(C.ConfigError) as e:
        C.parse("\nmodel:\n  path: yolo_studnet\n")
    msg = str(e.value)
    assert "model.path" in msg and "line 3" in msg and "detectnet_v2_r18" in msg, msg


def test_diff_lists_changed_keys():
    a = C.Config()
    b = C.parse("alarm:\n  cooldown_s: 3\nlog_level: DEBUG\n")
    assert C.diff(a, b) == ["alarm.cooldown_s", "log_level"]


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("alarm:\n  volume: 0.5\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("alarm:\n  volume: 5\n  colume: 1\n", encoding="utf-8")
    r = subprocess.run(maskwatch_cmd() + ["check-config", str(good)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK")
    r = subprocess.run(maskwatch_cmd() + ["check-config", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "INVALID" in r.stderr and "alarm.volume (line 2)" in r.stderr and "alarm.colume (line 3)" in r.stderr
    r = subprocess.run(maskwatch_cmd() + ["check-config", str(C.EXAMPLE_CONFIG)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
