"""The shared training loop (models/train/loop.py): best by validation score, resume, --max-steps, the files.

The recipes' own tiny runs (test_train, test_yolo_student, test_finetune, test_finetune_ssd,
test_distill_student, test_prune) run it on the shared photos; this file pins the loop's rules on a
least-squares fit whose answer is known.
"""
from __future__ import annotations

import argparse
import json

import pytest

torch = pytest.importorskip("torch")

from models.train.detectnet_v2 import build_meta, parse_args  # noqa: E402
from models.train.loop import EMA, Loop, warmup_cosine  # noqa: E402


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 2, generator=g)
    y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]  # 4 batches


def _loop(tmp_path, epochs, scores, resume=False, max_steps=0, val_every=1):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    sched = warmup_cosine(opt, epochs * 4, 4)
    args = argparse.Namespace(out=tmp_path / "run", epochs=epochs, resume=resume, max_steps=max_steps, seed=0)
    calls = []

    def validate(m):
        calls.append(len(calls))
        return {"mAP50_mask_no_mask": scores[len(calls) - 1]}

    def step(batch):
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        return loss, {"mse": float(loss.detach())}

    meta = build_meta(parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run")]))
    loop = Loop(args, model, opt, sched, EMA(model, decay=0.5), meta, {"arch": "linear"}, validate,
                "mAP50_mask_no_mask", {"loss": "total"}, ("mAP",), val_every=val_every, progress=False)
    return loop, step, calls


def test_best_is_the_best_validated_epoch_and_every_file_is_written(tmp_path):
    loop, step, _ = _loop(tmp_path, 3, [0.2, 0.5, 0.3])
    hist = loop.run(_problem(), step)
    run = tmp_path / "run"
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[-1]["loss"] < hist[0]["loss"]
    best = torch.load(run / "best.pt", weights_only=False)
    last = torch.load(run / "last.pt", weights_only=False)
    assert best["epoch"] == 2 and best["metrics"]["mAP50_mask_no_mask"] == 0.5 and best["arch"] == "linear"
    assert "opt" not in best and set(best["ema"]) == {"weight", "bias"}
    assert last["epoch"] == 2 and last["step"] == 12 and last["best"] == 0.5  # 0-based epoch index in last.pt
    assert json.loads((run / "history.json").read_text()) == json.loads(json.dumps(hist))
    assert (run / "curves.png").stat().st_size > 1000
    assert json.loads(best["meta"])["input_w"] == loop.meta.input_w and best["args"]["epochs"] == 3


def test_resume_continues_the_run_where_last_pt_left_it(tmp_path):
    loop, step, _ = _loop(tmp_path, 2, [0.4, 0.1])
    loop.run(_problem(), step)
    loop2, step2, calls = _loop(tmp_path, 4, [0.3, 0.6], resume=True)
    hist = loop2.run(_problem(), step2)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and len(calls) == 2  # only epochs 3 and 4 ran
    assert loop2.step == 16
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=False)["epoch"] == 4  # 0.6 beats the resumed 0.4


def test_max_steps_stops_mid_epoch_and_an_unvalidated_epoch_never_beats_a_validated_one(tmp_path):
    loop, step, calls = _loop(tmp_path, 5, [0.0, 0.0], max_steps=6, val_every=3)
    hist = loop.run(_problem(), step)
    # epoch 1 (4 steps) is not validated; epoch 2 stops after 2 steps and, as the last, is validated
    assert loop.step == 6 and len(hist) == 2 and len(calls) == 1
    assert "mAP50_mask_no_mask" not in hist[0] and hist[1]["mAP50_mask_no_mask"] == 0.0
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=False)["epoch"] == 2  # AP 0.0 > -loss
