"""models.train.precision: which bf16 / channels_last a run uses, and a real training step under the choice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.train import precision
from tests.models.training_cli import run_cli


def _flags() -> set:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_auto_never_uses_channels_last_on_the_cpu_and_bf16_only_where_native():
    p = precision.choose(torch.device("cpu"))
    assert p.channels_last is False
    assert p.bf16 == bool(_flags() & {"avx512_bf16", "amx_bf16"})
    assert precision.cpu_has_native_bf16() == p.bf16


def test_explicit_choices_and_errors():
    cpu = torch.device("cpu")
    assert precision.choose(cpu, "on", "on") == precision.Precision("cpu", True, True)
    assert precision.choose(cpu, "off", "off") == precision.Precision("cpu", False, False)
    assert precision.choose(torch.device("cuda"), "auto", "auto").channels_last is True
    with pytest.raises(ValueError, match="bf16 must be one of auto, on, off"):
        precision.choose(cpu, "yes")


def test_cpu_flags_parse_a_cpuinfo_file(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                 "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(str(f)) == frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"})
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_precision_applies_the_memory_format_and_autocast():
    m = torch.nn.Conv2d(3, 5, 3)
    x = torch.rand(2, 3, 8, 8)
    p = precision.Precision("cpu", bf16=True, channels_last=True)
    assert p.model(m).weight.is_contiguous(memory_format=torch.channels_last)
    assert p.input(x).is_contiguous(memory_format=torch.channels_last)
    with p.autocast():
        assert m(p.input(x)).dtype == torch.bfloat16
    q = precision.Precision("cpu")
    assert q.model(m).weight.is_contiguous() and q.input(x).is_contiguous()
    with q.autocast():
        assert m(x).dtype == torch.float32


def test_forced_choice_reaches_the_training_run(face_mask_dir, tmp_path):
    # --bf16 on / --channels-last off on the CLI: the run logs and uses them (the real network, real photos)
    out = tmp_path / "run"
    r = run_cli("models.train.detectnet_v2", ["--data", face_mask_dir, "--out", out, "--epochs", "1", "--batch", "2", "--limit", "4",
                                 "--crop", "96", "--width", "0.25", "--workers", "0", "--no-val", "--threads", "2",
                                 "--max-steps", "2", "--bf16", "on", "--channels-last", "off"])
    assert "precision: cpu, bf16 autocast, contiguous" in r.stderr
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["args"]["bf16"] == "on" and ck["args"]["channels_last"] == "off"
    assert json.loads((out / "history.json").read_text())[0]["loss"] > 0
