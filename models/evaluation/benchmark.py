"""Batch-1 latency of an ONNX model in ONNX Runtime on this machine's CPU.

CLI::

    python -m models.evaluation.benchmark --model models/released/detectnet_v2_r18/model.onnx --runs 50

Prints the median, p10 and p90 ms of ``session.run`` alone (pre/post-processing
excluded) at the model's own input size, after warm-up, and the thread count. ``--batch N`` (models with a
dynamic batch axis, e.g. the mask classifier) runs N inputs per call and also reports ms per item
(``ms_per_item_median``: the median call time / N).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batch", type=int, default=1, help="inputs per call (dynamic-batch models only)")
    a = ap.parse_args(argv)
    from edge.backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(a.model, threads=a.threads)
    m = be.meta
    x = np.random.default_rng(0).random((a.batch, 3, m.input_h, m.input_w), dtype=np.float32)
    for _ in range(a.warmup):
        be.infer(x)
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter(); be.infer(x); ts.append((time.perf_counter() - t) * 1e3)
    res = {"model": str(a.model), "input": f"{m.input_w}x{m.input_h}", "threads": a.threads, "runs": a.runs,
           "ms_median": float(np.median(ts)), "ms_p10": float(np.percentile(ts, 10)), "ms_p90": float(np.percentile(ts, 90)),
           "fps_median": 1000.0 / float(np.median(ts)), "batch": a.batch,
           "ms_per_item_median": float(np.median(ts)) / a.batch}
    print(json.dumps(res) if a.json else
          f"{a.model} {res['input']} batch {a.batch}, {a.threads} threads, {a.runs} runs: median {res['ms_median']:.1f} ms "
          f"(p10 {res['ms_p10']:.1f}, p90 {res['ms_p90']:.1f}) = {res['fps_median']:.1f} fps"
          + (f", {res['ms_per_item_median']:.2f} ms per item" if a.batch > 1 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
