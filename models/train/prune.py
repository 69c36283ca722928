"""Structured (channel) pruning of the DetectNet_v2 ResNet-18, TAO style: prune -> retrain -> prune more.

CLI::

    # the chain: one stage per ratio, each followed by fine-tuning (checkpoints runs/prune/stageK.pt)
    python -m models.train.prune --ckpt runs/r18/best.pt --out runs/prune --data ../shared/data/face-mask-andrewmvd \
        --ratio 0.29 0.22 0.33 --epochs 8 9 12 --lr 5e-4
    # or TAO's magnitude threshold (-pth) instead of a ratio, one value per stage
    python -m models.train.prune --ckpt runs/r18/best.pt --out runs/prune_t --data ... --threshold 0.1
    # afterwards: export, evaluate (ONNX Runtime) and time every stage -> the pruning table
    python -m models.train.prune --report --ckpt runs/r18/best.pt --out runs/prune --data ... \
        --table runs/prune/pruning_table.json
    # release one stage (export -> evaluate -> export with thresholds + parity -> latency)
    python -m models.train.prune --release models/released/detectnet_v2_r18_pruned --ckpt runs/prune/stage2.pt --out runs/prune --data ...

How channels are chosen (what TAO's ``prune`` does, with torch-pruning's DependencyGraph):

* **Importance**: the L2 norm of each output filter of a conv layer, divided by the largest filter
  norm of that layer (TAO's default normaliser ``max``), so every layer's scores lie in (0, 1].
* **Groups**: the DependencyGraph couples every layer whose channels must be removed together:
  a conv, its BN and the next conv's input channels; and, through the residual additions, every
  block output of a ResNet stage with the projection shortcut and the next stage's inputs (the
  stem with the whole of layer1, since layer1 has identity shortcuts).
* **Union equalisation**: a group's importance per channel is the *maximum* over the producing
  convs of the group (``group_reduction="max"``): a residual channel is kept if *any* layer that
  writes into it needs it, which is TAO's ``-eq union``. The same channel indices are removed from
  every member, so both operands of every residual ``add`` keep equal channel counts.
* **Fixed outputs**: the coverage and bbox heads are ignored layers: their output channels
  (C and 4C) never change; their input channels follow layer4.
* ``--ratio R``: torch-pruning's ``BasePruner`` (formerly ``MetaPruner``) removes the fraction R of
  each group's current channels with the lowest importance, channels kept rounded down to a
  multiple of ``--granularity`` (8: friendly to CPU kernels and TensorRT).
* ``--threshold T``: every channel whose group importance is below T is removed (TAO ``-pth``), but
  at least ``--min-channels`` stay per group and the kept count is rounded *up* to a multiple of
  ``--granularity`` by keeping the next most important channels (TAO ``-m`` and ``-pg``).

Checkpoint format of a pruned model (``stageK.pt``, and ``best.pt``/``last.pt`` in its stage
folder): the keys of :mod:`models.train.detectnet_v2`'s checkpoints (``ema`` weights, ``widths`` of the
unpruned network, ``meta`` ModelMeta JSON) plus ``arch = "detectnet_v2_pruned"`` and
``channels`` = {module name: [out_channels, in_channels] for Conv2d, [num_features] for BatchNorm2d}.
:func:`load_pruned` rebuilds the network from them, so :func:`models.export.load_checkpoint` (its
``LOADERS``) and everything built on it (export, evaluate, release script) work unchanged.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

import torch_pruning as tp
from torch_pruning.pruner import function as tpf

from edge.model import ModelMeta
from models.train import precision as precision_
from models.nets import DetectNetV2

log = logging.getLogger("models.train.prune")
ARCH = "detectnet_v2_pruned"


class UnionL2Importance(tp.importance.MagnitudeImportance):
    """Per-channel importance of a torch-pruning group: TAO's max-normalised filter L2 norm, union-equalised.

    For each conv in the group whose *output* channels are pruned, the L2 norm of every filter
    (``p = 2``, over in-channels x kh x kw) divided by the layer's largest filter norm; the group's
    score per channel is the maximum of those (``group_reduction="max"``). Returns a (n,) float32
    tensor in (0, 1] indexed like the group's root channels, or None for a group without convs.
    """

    def __init__(self):
        super().__init__(p=2, group_reduction="max", normalizer=None, target_types=[nn.Conv2d])

    @torch.no_grad()
    def __call__(self, group) -> Optional[torch.Tensor]:
        imps, roots = [], []
        for i, (dep, idxs) in enumerate(group):
            layer = dep.layer
            if not isinstance(layer, nn.Conv2d) or dep.pruning_fn != tpf.prune_conv_out_channels:
                continue
            norm = layer.weight.detach().float().flatten(1).norm(p=self.p, dim=1)
            norm = norm / norm.max().clamp_min(1e-12)
            imps.append(norm[idxs]); roots.append(group[i].root_idxs)
        return self._reduce(imps, roots) if imps else None


def make_pruner(model: DetectNetV2, ratio: float = 0.0, granularity: int = 8) -> tp.pruner.BasePruner:
    """A torch-pruning ``BasePruner`` over ``model`` (traced on a (1,3,64,64) input) with the heads ignored."""
    return tp.pruner.BasePruner(
        model, torch.zeros(1, 3, 64, 64), importance=UnionL2Importance(), pruning_ratio=ratio,
        ignored_layers=[model.cov_head, model.bbox_head], round_to=granularity if granularity > 1 else None,
        global_pruning=False)


def _finish(model: DetectNetV2) -> DetectNetV2:
    model.backbone.out_channels = model.cov_head.in_channels
    return model


def prune_ratio(model: DetectNetV2, ratio: float, granularity: int = 8) -> DetectNetV2:
    """Remove the fraction ``ratio`` (0-1) of every prunable group's channels, in place; returns ``model``."""
    model.eval()
    make_pruner(model, ratio, granularity).step()
    return _finish(model)


def prune_threshold(model: DetectNetV2, threshold: float, granularity: int = 8, min_channels: int = 16
                    ) -> Dict[str, Dict[str, int]]:
    """Remove, in place, every channel whose group importance is below ``threshold`` (0-1).

    Per group at least ``min(min_channels, n)`` channels stay and the kept count is rounded up to a
    multiple of ``granularity`` (the next most important channels are kept). Returns
    {root layer name: {"before": n, "kept": k, "below": channels under the threshold}}.
    """
    model.eval()
    pruner = make_pruner(model, 0.0, granularity)
    names = {m: n for n, m in model.named_modules()}
    imp_fn, report = UnionL2Importance(), {}
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        imp = imp_fn(group)
        if imp is None:
            continue
        n = len(imp)
        below = int((imp < threshold).sum())
        keep = max(n - below, min(min_channels, n))
        keep = min(n, int(math.ceil(keep / granularity) * granularity)) if granularity > 1 else keep
        order = torch.argsort(imp, descending=True, stable=True)
        idxs = sorted(int(i) for i in order[keep:])
        root = group[0].dep.target.module
        report[names.get(root, str(root))] = {"before": n, "kept": keep, "below": below}
        if idxs:
            pruner.DG.get_pruning_group(root, group[0].dep.handler, idxs).prune()
    _finish(model)
    return report


def channel_config(model: nn.Module) -> Dict[str, List[int]]:
    """{module name: [out_channels, in_channels]} for every Conv2d, {name: [num_features]} for every BatchNorm2d."""
    cfg = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            cfg[name] = [m.out_channels, m.in_channels]
        elif isinstance(m, nn.BatchNorm2d):
            cfg[name] = [m.num_features]
    return cfg


def apply_channels(model: nn.Module, channels: Dict[str, List[int]]) -> nn.Module:
    """Replace, in place, every Conv2d / BatchNorm2d named in ``channels`` by one of the recorded size (fresh weights)."""
    for name, m in list(model.named_modules()):
        if name not in channels:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(m, nn.Conv2d):
            out_c, in_c = channels[name]
            new = nn.Conv2d(in_c, out_c, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, bias=m.bias is not None)
        elif isinstance(m, nn.BatchNorm2d):
            new = nn.BatchNorm2d(channels[name][0], eps=m.eps, momentum=m.momentum)
        else:
            raise ValueError(f"{name}: cannot resize a {type(m).__name__}")
        setattr(parent, child, new)
    if isinstance(model, DetectNetV2):
        _finish(model)
    return model


def load_pruned(ck: Dict) -> DetectNetV2:
    """Rebuild a pruned DetectNetV2 with its EMA weights from a ``detectnet_v2_pruned`` checkpoint dict.

    Uses ``ck["meta"]`` (class count), ``ck["widths"]`` (unpruned widths), ``ck["channels"]``
    (see :func:`channel_config`) and ``ck["ema"]``. Returned in train mode, as ``nn.Module`` builders do.
    """
    meta = ModelMeta.from_json(ck["meta"])
    model = apply_channels(DetectNetV2(len(meta.classes), ck["widths"]), ck["channels"])
    model.load_state_dict(ck["ema"])
    return model


def save_pruned(path: Path, model: DetectNetV2, meta: ModelMeta, widths: Sequence[int], **extra) -> Path:
    """Write a pruned checkpoint (``arch``, ``channels``, ``ema``, ``widths``, ``meta`` + ``extra``) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": ARCH, "channels": channel_config(model), "ema": model.state_dict(), "widths": list(widths),
                "meta": meta.to_json(), **extra}, path)
    return path


def residual_add_channels(model: DetectNetV2) -> List[tuple]:
    """(block name, channels of the residual branch, channels of the shortcut) for every BasicBlock."""
    from models.nets.resnet import BasicBlock

    rows = []
    for name, m in model.named_modules():
        if isinstance(m, BasicBlock):
            short = m.downsample[0].out_channels if m.downsample is not None else m.conv1.in_channels
            rows.append((name, m.bn2.num_features, short))
    return rows


# ----------------------------------------------------------------------------------------------- chain
def _stats(model: nn.Module, meta: ModelMeta) -> Dict[str, float]:
    from models.export import model_stats

    return model_stats(model.float().to(memory_format=torch.contiguous_format).eval(), meta)


def _validate(model: nn.Module, meta: ModelMeta, data: Path, val_hex: str, threads: int) -> Dict[str, float]:
    from models.data import read_dataset, split
    from models.train.detectnet_v2 import validate

    torch.set_num_threads(threads)
    _, val = split(read_dataset(data), val_hex)
    prec = precision_.choose(torch.device("cpu"))  # the pruned network's odd channel counts: see models.train.precision
    res = validate(prec.model(model), meta, val, torch.device("cpu"), amp=prec.bf16, channels_last=prec.channels_last)
    model.to(memory_format=torch.contiguous_format)
    return res


def run_chain(a: argparse.Namespace) -> List[Dict]:
    """Prune -> fine-tune, one stage per ``--ratio``/``--threshold`` value; writes ``OUT/chain.json``."""
    from models.export import load_checkpoint
    from models.train.detectnet_v2 import fit, parse_args

    a.out.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(a.ckpt)
    base_ck = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    widths = base_ck["widths"]
    base = _stats(model, meta)
    rows = [{"stage": 0, "ckpt": str(a.ckpt), **base}]
    log.info("stage 0 (%s): %.2f M params, %.2f GFLOPs", a.ckpt, base["params_M"], base["GFLOPs"])
    values = a.ratio if a.ratio is not None else a.threshold
    mode = "ratio" if a.ratio is not None else "threshold"
    if len(a.epochs) not in (1, len(values)):
        raise SystemExit(f"--epochs: give one value or one per stage ({len(values)})")
    for k, v in enumerate(values, 1):
        epochs = a.epochs[0] if len(a.epochs) == 1 else a.epochs[k - 1]
        final, sdir = a.out / f"stage{k}.pt", a.out / f"stage{k}"
        if a.resume and final.exists():
            ck = torch.load(final, map_location="cpu", weights_only=False)
            model = load_pruned(ck).eval()
            rows.append(ck["stage"])
            log.info("stage %d: done before, loaded %s", k, final)
            continue
        t0 = time.time()
        report = None
        if mode == "ratio":
            prune_ratio(model, v, a.granularity)
        else:
            report = prune_threshold(model, v, a.granularity, a.min_channels)
        st = _stats(model, meta)
        row = {"stage": k, mode: v, **st, "params_kept": st["params_M"] / base["params_M"],
               "flops_kept": st["GFLOPs"] / base["GFLOPs"], "channels": channel_config(model)}
        if report:
            row["threshold_report"] = report
        log.info("stage %d: %s %s -> %.2f M params (%.1f %%), %.2f GFLOPs (%.1f %%)", k, mode, v, st["params_M"],
                 100 * row["params_kept"], st["GFLOPs"], 100 * row["flops_kept"])
        if not a.no_val:
            row["after_prune"] = _validate(model, meta, a.data, a.val_hex, a.threads)
            log.info("stage %d before fine-tuning: %s", k, {x: round(y, 3) for x, y in row["after_prune"].items()})
        extra = {"arch": ARCH, "channels": channel_config(model)}
        if epochs > 0:
            targs = ["--data", str(a.data), "--out", str(sdir), "--epochs", str(epochs), "--lr", str(a.lr),
                     "--warmup-epochs", str(a.warmup_epochs), "--batch", str(a.batch), "--threads", str(a.threads),
                     "--workers", str(a.workers), "--seed", str(a.seed), "--val-hex", a.val_hex,
                     "--bf16", a.bf16, "--channels-last", a.channels_last]
            targs += ["--resume"] if a.resume else []
            targs += ["--no-val"] if a.no_val else []
            targs += ["--max-steps", str(a.max_steps)] if a.max_steps else []
            targs += ["--limit", str(a.limit)] if a.limit else []
            fit(parse_args(targs), model=model, ckpt_extra=extra)
            # best.pt: best validation EMA weights (with --no-val fit may write none: then last.pt's EMA)
            best = sdir / "best.pt" if (sdir / "best.pt").exists() else sdir / "last.pt"
            ck = torch.load(best, map_location="cpu", weights_only=False)
            model = load_pruned(ck).eval()
            row["fine_tune"] = {"epochs": epochs, "best_epoch": ck.get("epoch", 0) + (best.name == "last.pt"), "lr": a.lr,
                                "metrics": ck.get("metrics", ck.get("history", [{}])[-1]), "history": json.loads((sdir / "history.json").read_text())}
        else:
            model = model.eval()
        row["wall_s"] = time.time() - t0
        save_pruned(final, model, meta, widths, stage=row)
        if epochs > 0:  # keep the stage folder a release-ready run dir (best.pt in the pruned format)
            shutil.copy(final, sdir / "best.pt")
        rows.append(row)
        (a.out / "chain.json").write_text(json.dumps(rows, indent=1))
        log.info("stage %d done in %.0f s: %s", k, row["wall_s"],
                 {x: round(y, 3) for x, y in row.get("fine_tune", {}).get("metrics", {}).items() if "AP" in x})
    (a.out / "chain.json").write_text(json.dumps(rows, indent=1))
    return rows


# ---------------------------------------------------------------------------------------------- report
def _latency(onnx_path: Path, runs: int) -> Dict[str, float]:
    from models.evaluation.benchmark import main as bench_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        bench_main(["--model", str(onnx_path), "--runs", str(runs), "--json"])
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def report(a: argparse.Namespace) -> List[Dict]:
    """Export every stage (and the unpruned ``--ckpt``) to ONNX, evaluate it in ONNX Runtime and time it.

    Rows: stage, channel ratio / threshold, params_M, GFLOPs, percentages of the unpruned model,
    ONNX Runtime batch-1 latency (models.evaluation.benchmark), and models.evaluation.evaluate's metrics.
    """
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from models.data import read_dataset, split
    from models.evaluation.evaluate import evaluate
    from models.export import export_onnx, load_checkpoint, model_stats

    _, val = split(read_dataset(a.data), a.val_hex)
    ckpts = [(0, a.ckpt)] + sorted(((int(p.stem[5:]), p) for p in a.out.glob("stage*.pt")))
    rows, base = [], None
    outdir = a.out / "report"
    for k, path in ckpts:
        model, meta = load_checkpoint(path)
        meta.cluster.update(method=a.cluster_method, iou_threshold=a.iou_threshold)
        onnx_path = export_onnx(model, meta, outdir / f"stage{k}.onnx")
        st = model_stats(model, meta)
        base = base or st
        ck = torch.load(path, map_location="cpu", weights_only=False)
        sinfo = ck.get("stage", {})
        be = OnnxRuntimeBackend(onnx_path)
        ev = evaluate(be.infer, be.meta, val)
        (outdir / f"stage{k}_eval.json").write_text(json.dumps(ev, indent=1))
        lat = _latency(onnx_path, a.runs)
        row = {"stage": k, "ckpt": str(path), "ratio": sinfo.get("ratio", 0.0 if k == 0 else None),
               "threshold": sinfo.get("threshold"), "params_M": st["params_M"], "GMACs": st["GMACs"],
               "GFLOPs": st["GFLOPs"], "params_kept": st["params_M"] / base["params_M"],
               "flops_kept": st["GFLOPs"] / base["GFLOPs"], "onnx_MB": onnx_path.stat().st_size / 1e6,
               "ort_ms_median": lat["ms_median"], "ort_ms_p10": lat["ms_p10"], "ort_ms_p90": lat["ms_p90"],
               "ort_threads": lat["threads"],
               **{x: ev[x] for x in ev if x.startswith(("AP", "mAP", "no_mask_"))},
               "fine_tune_epochs": sinfo.get("fine_tune", {}).get("epochs", 0),
               "fine_tune_s": sinfo.get("fine_tune", {}).get("history", [{}])[-1].get("elapsed_s", 0.0),
               "mAP50_mask_no_mask_before_fine_tune": sinfo.get("after_prune", {}).get("mAP50_mask_no_mask")}
        rows.append(row)
        log.info("stage %d: %.2f M params, %.2f GFLOPs, %.1f ms, mAP50 %.3f, mask+no_mask %.3f", k, row["params_M"],
                 row["GFLOPs"], row["ort_ms_median"], row["mAP50"], row["mAP50_mask_no_mask"])
    table = {"cluster": {"method": a.cluster_method, "iou_threshold": a.iou_threshold}, "split": "val (md5 hex " + a.val_hex + ")",
             "latency": f"ONNX Runtime CPU, batch 1, {meta.input_w}x{meta.input_h}, {a.runs} runs, median ms", "rows": rows}
    path = a.table or (a.out / "pruning_table.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1))
    print(markdown_table(rows))
    return rows


def release(a: argparse.Namespace) -> Path:
    """Release one pruned stage as ``scripts/release_detectnet_v2.sh`` does for the unpruned model.

    ``--ckpt`` (a stageK.pt) -> ``RELEASE/model{suffix}.onnx`` with thresholds and metrics embedded,
    ``eval{suffix}.json`` + ``pr_curve{suffix}.png`` + ``confusion_matrix{suffix}.png`` (models.evaluation.evaluate on
    the validation split), ``export{suffix}.json`` (parity on 8 real images + params/FLOPs),
    ``latency{suffix}.json`` (models.evaluation.benchmark), ``training_curves{suffix}.png`` and ``split.json``.
    """
    from edge.backends.onnxruntime import OnnxRuntimeBackend
    from models.data import read_dataset, split
    from models.evaluation.evaluate import evaluate
    from models.export import export_onnx, load_checkpoint, model_stats, parity

    out, sfx = a.release, a.suffix
    out.mkdir(parents=True, exist_ok=True)
    _, val = split(read_dataset(a.data), a.val_hex)
    model, meta = load_checkpoint(a.ckpt)
    meta.version = a.version
    meta.cluster.update(method=a.cluster_method, iou_threshold=a.iou_threshold)
    cand = export_onnx(model, meta, a.out / f"release_candidate{sfx}.onnx")
    be = OnnxRuntimeBackend(cand)
    plots = a.out / f"release_plots{sfx}"
    ev = evaluate(be.infer, be.meta, val, plots)
    (out / f"eval{sfx}.json").write_text(json.dumps(ev, indent=1))
    for name in ("pr_curve", "confusion_matrix"):
        shutil.copy(plots / f"{name}.png", out / f"{name}{sfx}.png")
    meta.thresholds = ev["thresholds"]
    meta.metrics = {k: ev[k] for k in ev if k.startswith(("AP", "mAP", "no_mask_"))}
    onnx_path = export_onnx(model, meta, out / f"model{sfx}.onnx")
    imgs = sorted((a.data / "images").glob("*.jpg"))[:8]
    (out / f"export{sfx}.json").write_text(json.dumps({"parity": parity(model, onnx_path, imgs), **model_stats(model, meta)}, indent=1))
    (out / f"latency{sfx}.json").write_text(json.dumps(_latency(onnx_path, a.runs)))
    sdir = a.ckpt.with_suffix("")
    for src, dst in ((sdir / "curves.png", out / f"training_curves{sfx}.png"), (sdir / "split.json", out / "split.json")):
        if src.exists():
            shutil.copy(src, dst)
    log.info("released %s (%.1f MB) from %s", onnx_path, onnx_path.stat().st_size / 1e6, a.ckpt)
    return onnx_path


def markdown_table(rows: Sequence[Dict]) -> str:
    """The pruning table as Markdown (one row per stage)."""
    head = ("| stage | channel ratio removed | params (M) | weights kept | GFLOPs | FLOPs kept | ORT median ms "
            "| mAP@0.5 (3 classes) | mAP@0.5 mask+no_mask |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in rows:
        ratio = r["ratio"] if r.get("ratio") is not None else f"thr {r.get('threshold')}"
        lines.append(f"| {r['stage']} | {ratio} | {r['params_M']:.2f} | {100 * r['params_kept']:.1f} % | {r['GFLOPs']:.2f} "
                     f"| {100 * r['flops_kept']:.1f} % | {r['ort_ms_median']:.1f} | {r['mAP50']:.3f} | {r['mAP50_mask_no_mask']:.3f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True, help="starting checkpoint (models.train.detectnet_v2 best.pt, or a stageK.pt)")
    ap.add_argument("--out", type=Path, required=True, help="run folder: stageK.pt, stageK/ (fine-tuning), chain.json")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/face-mask-andrewmvd"))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--ratio", type=float, nargs="+", help="per stage: fraction (0-1) of each group's channels removed")
    g.add_argument("--threshold", type=float, nargs="+", help="per stage: normalised L2 importance threshold (0-1)")
    ap.add_argument("--granularity", type=int, default=8, help="channels kept per group: a multiple of this")
    ap.add_argument("--min-channels", type=int, default=16, help="threshold mode: channels kept at least per group")
    ap.add_argument("--epochs", type=int, nargs="+", default=[6],
                    help="fine-tuning epochs after each pruning stage, one value for all or one per stage (0: none)")
    ap.add_argument("--lr", type=float, default=5e-4, help="fine-tuning AdamW peak learning rate (cosine)")
    ap.add_argument("--warmup-epochs", type=float, default=0.3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-hex", default="01")
    ap.add_argument("--no-val", action="store_true", help="skip validation (smoke tests)")
    ap.add_argument("--max-steps", type=int, default=0, help="fine-tuning steps per stage at most (smoke tests)")
    ap.add_argument("--limit", type=int, default=0, help="fine-tune on the first N training images only (smoke tests)")
    ap.add_argument("--resume", action="store_true", help="skip finished stages, continue a stage from its last.pt")
    ap.add_argument("--report", action="store_true", help="export, evaluate and time the unpruned model and every stage")
    ap.add_argument("--table", type=Path, help="report: pruning table JSON (default OUT/pruning_table.json)")
    ap.add_argument("--release", type=Path, help="release --ckpt (a stageK.pt) into this folder (model.onnx, eval.json, ...)")
    ap.add_argument("--suffix", default="", help="release: file name suffix, e.g. _12 -> model_12.onnx")
    ap.add_argument("--version", default="1.0.0", help="release: model version stored in the metadata")
    ap.add_argument("--runs", type=int, default=50, help="report: timed ONNX Runtime runs per model")
    ap.add_argument("--cluster-method", default="nms", choices=["nms", "dbscan"], help="report: clustering (as v1.0.0)")
    ap.add_argument("--iou-threshold", type=float, default=0.5, help="report: NMS IoU (as v1.0.0)")
    precision_.add_args(ap)
    a = ap.parse_args(argv)
    if not (a.report or a.release) and a.ratio is None and a.threshold is None:
        ap.error("give --ratio or --threshold (or --report, --release)")
    return a


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    a = parse_args(argv)
    if a.release:
        release(a)
    elif a.report:
        report(a)
    else:
        run_chain(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
