"""Training-speed benchmark: seconds per step and per epoch of the standard recipe, per precision.

Times the DetectNet_v2 ResNet-18 recipe of ``models.train`` (full width, 320 x 320 crops, batch 16,
AdamW, real training photos through the real augmentation) under each combination of bf16
autocast and ``channels_last`` (see :mod:`models.precision`), each in its own subprocess so that a
native crash of one combination (SIGSEGV in oneDNN) is reported as such instead of ending the
benchmark. Prints one row per combination: median and p90 s/step over the timed steps, the
implied s/epoch (steps per epoch x median step; validation not included), and the speed-up over
fp32::

    python -m models.bench_train --data ../shared/data/face-mask-andrewmvd --steps 8

The machine is shared and noisy: quote medians, and the load average printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

COMBOS = (("off", "off"), ("off", "on"), ("on", "off"), ("on", "on"))  # (bf16, channels_last)


def one(a: argparse.Namespace) -> Dict:
    """Time ``a.steps`` steps (after ``a.warmup``) of one precision combination in this process."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from edge.decoders import CLASS_NAMES
    from models.data import read_dataset, split
    from models.losses import detectnet_v2_loss
    from models.nets import DetectNetV2
    from models.precision import choose
    from models.train import TrainSet, build_meta, parse_args

    targs = parse_args(["--data", str(a.data), "--out", "/nonexistent"])  # the recipe's defaults
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    prec = choose(torch.device("cpu"), a.bf16, a.channels_last)
    train_s, _ = split(read_dataset(a.data))
    geo = build_meta(targs).detectnet
    ds = TrainSet(train_s[: max(a.batch * (a.steps + a.warmup), 64)], targs.crop, geo, tuple(targs.scale), seed=0)
    dl = DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True, num_workers=targs.workers,
                    worker_init_fn=lambda w: ds.set_random_seed(w))
    model = prec.model(DetectNetV2(len(CLASS_NAMES), [64, 128, 256, 512]).train())
    opt = torch.optim.AdamW(model.parameters(), lr=targs.lr, weight_decay=targs.weight_decay)
    times: List[float] = []
    it = iter(dl)
    for k in range(a.warmup + a.steps):
        try:
            x, cov_t, bbox_t = next(it)
        except StopIteration:
            it = iter(dl)
            x, cov_t, bbox_t = next(it)
        t0 = time.perf_counter()
        x = prec.input(x)
        with prec.autocast():
            cov, bbox = model(x)
        loss, _ = detectnet_v2_loss(cov, bbox, cov_t, bbox_t, targs.pos_weight, targs.bbox_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= a.warmup:
            times.append(time.perf_counter() - t0)
    steps_per_epoch = len(train_s) // a.batch
    med = float(np.median(times))
    return {"bf16": prec.bf16, "channels_last": prec.channels_last, "s_per_step_median": round(med, 3),
            "s_per_step_p90": round(float(np.percentile(times, 90)), 3), "steps_per_epoch": steps_per_epoch,
            "s_per_epoch": round(med * steps_per_epoch, 1), "loss_finite": bool(torch.isfinite(loss).item())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/face-mask-andrewmvd"))
    ap.add_argument("--steps", type=int, default=8, help="timed steps per combination")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=16, help="the recipe's batch (models.train default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--bf16", default=None, help=argparse.SUPPRESS)           # set for the child process
    ap.add_argument("--channels-last", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.bf16 is not None:  # child: one combination, one JSON line on stdout
        print(json.dumps(one(a)))
        return 0
    from models.precision import cpu_has_native_bf16, choose
    import torch

    auto = choose(torch.device("cpu"))
    print(f"CPU native bf16: {cpu_has_native_bf16()}; auto chooses: {auto.describe()}; "
          f"load average {os.getloadavg()[0]:.1f}; {a.threads} threads, batch {a.batch}, {a.steps} timed steps")
    rows = []
    for bf16, cl in COMBOS:
        cmd = [sys.executable, "-m", "models.bench_train", "--data", str(a.data), "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--batch", str(a.batch), "--threads", str(a.threads),
               "--bf16", bf16, "--channels-last", cl]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            row = json.loads(r.stdout.strip().splitlines()[-1])
        else:
            sig = -r.returncode if r.returncode < 0 else None
            why = f"killed by {signal.Signals(sig).name}" if sig else f"exit {r.returncode}"
            row = {"bf16": bf16 == "on", "channels_last": cl == "on", "error": why, "stderr": r.stderr[-400:]}
        rows.append(row)
    base = next((r["s_per_step_median"] for r in rows if "error" not in r and not r["bf16"] and not r["channels_last"]), None)
    print(f"{'precision':<32} {'s/step':>7} {'p90':>7} {'s/epoch':>8} {'vs fp32':>8}")
    for r in rows:
        name = f"{'bf16' if r['bf16'] else 'fp32'} {'channels_last' if r['channels_last'] else 'contiguous'}"
        if "error" in r:
            print(f"{name:<32} {r['error']}")
            continue
        speed = f"{base / r['s_per_step_median']:.2f}x" if base else "-"
        print(f"{name:<32} {r['s_per_step_median']:>7.3f} {r['s_per_step_p90']:>7.3f} {r['s_per_epoch']:>8.1f} {speed:>8}")
    if a.json:
        a.json.write_text(json.dumps({"auto": auto.describe(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
