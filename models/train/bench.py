"""Training-speed benchmark: seconds per step and per epoch of the standard recipe, per precision.

Times the DetectNet_v2 ResNet-18 recipe of ``models.train.detectnet_v2`` (full width, 320 x 320 crops, batch 16,
AdamW, real training photos through the real augmentation) under each combination of bf16
autocast and ``channels_last`` (see :mod:`models.train.precision`), round-robin in a child process; a
native crash of one combination (SIGSEGV in oneDNN) is reported as such, and the others are timed
again without it. Prints one row per combination: median, min and max s/step over the timed
steps, the implied s/epoch (steps per epoch x median step; data loading and validation not
included), and the speed-up over fp32::

    python -m models.train.bench --data ../shared/data/face-mask-andrewmvd --steps 5

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
from typing import Dict, List, Sequence, Tuple

COMBOS = (("off", "off"), ("off", "on"), ("on", "off"), ("on", "on"))  # (bf16, channels_last)


def _name(bf16: bool, cl: bool) -> str:
    return f"{'bf16' if bf16 else 'fp32'} {'channels_last' if cl else 'contiguous'}"


def timed(a: argparse.Namespace, combos: Sequence[Tuple[str, str]]) -> List[Dict]:
    """Time ``a.steps`` steps (after ``a.warmup``) of each combination in this process, round-robin.

    Round-robin (one step of each combination in turn, each with its own copy of the network and
    optimiser, on the same batches) so that the load of a shared machine falls on all of them
    alike. Before each step, ``STEP <bf16> <channels_last>`` goes to stderr, so a native crash can
    be pinned on its combination by the parent.
    """
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from edge.decoders import CLASS_NAMES
    from models.data import read_dataset, split
    from models.train.losses import detectnet_v2_loss
    from models.nets import DetectNetV2
    from models.train.precision import choose
    from models.train.detectnet_v2 import TrainSet, build_meta, parse_args

    targs = parse_args(["--data", str(a.data), "--out", "/nonexistent"])  # the recipe's defaults
    torch.set_num_threads(a.threads)
    train_s, _ = split(read_dataset(a.data))
    geo = build_meta(targs).detectnet
    ds = TrainSet(train_s[: a.batch * (a.steps + a.warmup)], targs.crop, geo, tuple(targs.scale), seed=0)
    batches = list(DataLoader(ds, batch_size=a.batch, shuffle=False, drop_last=True, num_workers=0))
    runs = []
    for bf16, cl in combos:
        torch.manual_seed(0)
        prec = choose(torch.device("cpu"), bf16, cl)
        model = prec.model(DetectNetV2(len(CLASS_NAMES), [64, 128, 256, 512]).train())
        opt = torch.optim.AdamW(model.parameters(), lr=targs.lr, weight_decay=targs.weight_decay)
        runs.append((prec, model, opt, []))
    for k, (x0, cov_t, bbox_t) in enumerate(batches):
        for prec, model, opt, times in runs:
            print(f"STEP {prec.bf16} {prec.channels_last}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            x = prec.input(x0)
            with prec.autocast():
                cov, bbox = model(x)
            loss, _ = detectnet_v2_loss(cov, bbox, cov_t, bbox_t, targs.pos_weight, targs.bbox_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if k >= a.warmup:
                times.append(time.perf_counter() - t0)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{prec.describe()}: loss {float(loss)}")
    steps_per_epoch = len(train_s) // a.batch
    out = []
    for prec, _, _, times in runs:
        med = float(np.median(times))
        out.append({"bf16": prec.bf16, "channels_last": prec.channels_last, "s_per_step_median": round(med, 3),
                    "s_per_step_min": round(min(times), 3), "s_per_step_max": round(max(times), 3),
                    "steps_per_epoch": steps_per_epoch, "s_per_epoch": round(med * steps_per_epoch, 1)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/face-mask-andrewmvd"))
    ap.add_argument("--steps", type=int, default=5, help="timed steps per combination")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--batch", type=int, default=16, help="the recipe's batch (models.train.detectnet_v2 default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "bf16,cl;bf16,cl": the child process
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(timed(a, [tuple(c.split(",")) for c in a.child.split(";")])))
        return 0
    import torch

    from models.train.precision import choose, cpu_has_native_bf16

    auto = choose(torch.device("cpu"))
    print(f"CPU native bf16: {cpu_has_native_bf16()}; auto chooses: {auto.describe()}; "
          f"load average {os.getloadavg()[0]:.1f}; {a.threads} threads, batch {a.batch}, {a.steps} timed steps each",
          flush=True)
    combos, crashed, rows = list(COMBOS), [], []
    while combos:
        cmd = [sys.executable, "-m", "models.train.bench", "--data", str(a.data), "--steps", str(a.steps),
               "--warmup", str(a.warmup), "--batch", str(a.batch), "--threads", str(a.threads),
               "--child", ";".join(",".join(c) for c in combos)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode == 0:
            rows = json.loads(r.stdout.strip().splitlines()[-1])
            break
        last = [ln.split()[1:] for ln in r.stderr.splitlines() if ln.startswith("STEP ")]
        if not last:
            raise SystemExit(f"the benchmark failed before its first step:\n{r.stderr[-2000:]}")
        bad = tuple("on" if v == "True" else "off" for v in last[-1])
        why = f"killed by {signal.Signals(-r.returncode).name}" if r.returncode < 0 else f"exit {r.returncode}"
        crashed.append({"bf16": bad[0] == "on", "channels_last": bad[1] == "on", "error": why})
        combos.remove(bad)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    base = next((r["s_per_step_median"] for r in rows if not r["bf16"] and not r["channels_last"]), None)
    print(f"{'precision':<26} {'s/step':>7} {'min':>7} {'max':>7} {'s/epoch':>8} {'vs fp32':>8}")
    for r in rows + crashed:
        name = _name(r["bf16"], r["channels_last"])
        if "error" in r:
            print(f"{name:<26} {r['error']}")
            continue
        speed = f"{base / r['s_per_step_median']:.2f}x" if base else "-"
        print(f"{name:<26} {r['s_per_step_median']:>7.3f} {r['s_per_step_min']:>7.3f} {r['s_per_step_max']:>7.3f} "
              f"{r['s_per_epoch']:>8.1f} {speed:>8}")
    if a.json:
        a.json.write_text(json.dumps({"auto": auto.describe(), "rows": rows + crashed}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
