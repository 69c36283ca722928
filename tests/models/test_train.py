"""A tiny real training run on a few shared images: the loss goes down, checkpoints resume.

Each run is a child process (tests/models/training_cli.py), so a native crash fails the test
with its signal instead of ending the test session."""
from __future__ import annotations

import json

import torch

from models.data import read_voc, split
from tests.models.training_cli import run_cli


def test_tiny_training_run_decreases_loss_and_resumes(face_mask_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--data", face_mask_dir, "--out", out, "--batch", "4", "--limit", "8", "--crop", "160", "--width", "0.5",
            "--workers", "0", "--no-val", "--threads", "2", "--lr", "3e-3"]
    r = run_cli("models.train.detectnet_v2", args + ["--epochs", "8"])
    assert "precision: cpu" in r.stderr  # the run says which bf16 / channels_last it chose
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 8
    first, last = hist[0]["loss"], min(h["loss"] for h in hist[-3:])
    assert last < 0.8 * first, (first, last)
    assert (out / "curves.png").stat().st_size > 10_000
    written = json.loads((out / "split.json").read_text())
    assert len(written["val"]) == len(split(read_voc(face_mask_dir))[1])
    # resume: continue the same run for 2 more epochs from last.pt
    run_cli("models.train.detectnet_v2", args + ["--epochs", "10", "--resume"])
    hist2 = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist2] == list(range(1, 11))
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] == 9 and ck["step"] == 10 * 2


def test_training_with_face_zoom_and_repeat_factor_sampling(face_mask_dir, tmp_path):
    # the release recipe's two options (models/released/detectnet_v2_r18/MODEL_CARD.md) run end to end
    out = tmp_path / "run"
    run_cli("models.train.detectnet_v2", ["--data", face_mask_dir, "--out", out, "--epochs", "2", "--batch", "4",
                             "--limit", "16", "--crop", "160", "--width", "0.25", "--workers", "0", "--no-val",
                             "--threads", "2", "--p-zoom", "0.5", "--rfs", "0.6"])
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(0 < h["loss"] < 1e3 for h in hist)
    assert torch.load(out / "last.pt", weights_only=False)["args"]["rfs"] == 0.6
