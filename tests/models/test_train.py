"""A tiny real training run on a few shared images: the loss goes down, checkpoints resume."""
from __future__ import annotations

import json

import torch

from models.train import fit, parse_args


def test_tiny_training_run_decreases_loss_and_resumes(face_mask_dir, tmp_path):
    out = tmp_path / "run"
    args = parse_args(["--data", str(face_mask_dir), "--out", str(out), "--epochs", "8", "--batch", "4",
                       "--limit", "8", "--crop", "160", "--width", "0.5", "--workers", "0", "--no-val",
                       "--threads", "2", "--lr", "3e-3"])
    fit(args)
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 8
    first, last = hist[0]["loss"], min(h["loss"] for h in hist[-3:])
    assert last < 0.8 * first, (first, last)
    assert (out / "curves.png").stat().st_size > 10_000
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 102
    # resume: continue the same run for 2 more epochs from last.pt
    args.epochs, args.resume = 10, True
    fit(args)
    hist2 = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist2] == list(range(1, 11))
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] == 9 and ck["step"] == 10 * 2


def test_training_with_face_zoom_and_repeat_factor_sampling(face_mask_dir, tmp_path):
    # the release recipe's two options (models/detectnet_v2_r18/MODEL_CARD.md) run end to end
    out = tmp_path / "run"
    args = parse_args(["--data", str(face_mask_dir), "--out", str(out), "--epochs", "2", "--batch", "4",
                       "--limit", "16", "--crop", "160", "--width", "0.25", "--workers", "0", "--no-val",
                       "--threads", "2", "--p-zoom", "0.5", "--rfs", "0.6"])
    fit(args)
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(0 < h["loss"] < 1e3 for h in hist)
    assert torch.load(out / "last.pt", weights_only=False)["args"]["rfs"] == 0.6
