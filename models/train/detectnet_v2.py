"""Train the DetectNet_v2-style ResNet-18 mask detector.

CLI (the released model's recipe; see models/released/detectnet_v2_r18/MODEL_CARD.md)::

    python -m models.train.detectnet_v2 --data ../shared/data/face-mask-andrewmvd --out runs/r18 --epochs 45

Seeded; a tqdm bar shows loss and ETA; ``last.pt`` is written every epoch and
``--resume`` continues from it; validation mAP (faster-coco-eval) is computed
every epoch and ``best.pt`` keeps the best EMA weights; ``curves.png`` plots loss
and mAP. Uses CUDA when present, else the CPU; bf16 autocast and ``channels_last`` are chosen
per machine by :mod:`models.train.precision` (``--bf16``, ``--channels-last``: auto | on | off).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Dict, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from edge.decoders import CLASS_NAMES, DetectNetV2Params, encode_detectnet_v2
from edge.model import ModelMeta
from models.train import augment
from models.data import Sample, class_counts, read_dataset, repeat_factors, split, write_split
from models.evaluation.evaluate import coco_metrics, run_images
from models.train.losses import detectnet_v2_loss
from models.nets import DetectNetV2
from models.train import precision as precision_
from models.train.precision import Precision
from models.train.loop import EMA, Loop, seed_everything, warmup_cosine

log = logging.getLogger("models.train.detectnet_v2")


class TrainSet(Dataset):
    """Augmented crops with DetectNet_v2 targets.

    Items: ``(image (3,S,S) float32 RGB/255, coverage (C,S/16,S/16), bbox (4C,S/16,S/16))``.
    """

    def __init__(self, samples: Sequence[Sample], crop: int, geo: DetectNetV2Params, scale=(0.6, 2.5),
                 p_zoom: float = 0.0, zoom=(40.0, 250.0), seed: int = 0):
        self.samples = list(samples)
        self.images = [cv2.imread(str(s.image)) for s in self.samples]
        self.crop, self.geo = crop, geo
        self.t = augment.train_transform(crop, scale)
        self.t_zoom = augment.train_transform(crop, None)
        self.p_zoom, self.zoom = p_zoom, tuple(zoom)
        self.rng = np.random.default_rng(seed)

    def set_random_seed(self, seed: int) -> None:
        """Seed both albumentations pipelines and the face-zoom draw (one call per DataLoader worker)."""
        self.t.set_random_seed(seed); self.t_zoom.set_random_seed(seed + 1)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        if self.p_zoom and self.rng.random() < self.p_zoom:
            img, b = augment.face_zoom(self.images[i], s.boxes, self.rng, self.zoom)
            img, boxes, labels = augment.apply(self.t_zoom, img, b, s.labels)
        else:
            img, boxes, labels = augment.apply(self.t, self.images[i], s.boxes, s.labels)
        cov, bbox = encode_detectnet_v2(boxes, labels, (self.crop, self.crop), len(CLASS_NAMES), self.geo)
        x = img[:, :, ::-1].astype(np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(cov), torch.from_numpy(bbox)


def torch_infer(model: torch.nn.Module, meta: ModelMeta, device: torch.device, amp: bool,
                channels_last: bool = False):
    """Wrap a detector as ``(1,3,H,W) float32 ndarray -> {role: ndarray}`` for the NumPy decoder; the
    network's outputs are named by ``meta.output_roles`` (``coverage, bbox`` or ``p8, p16, p32``).
    ``amp``: bf16 autocast; ``channels_last``: NHWC input (the model must be in the same format)."""
    prec = Precision(device.type, amp, channels_last)

    @torch.no_grad()
    def infer(x: np.ndarray) -> Dict[str, np.ndarray]:
        t = prec.input(torch.from_numpy(x).to(device))
        with prec.autocast():
            outs = model(t)
        return {role: o.float().cpu().numpy() for role, o in zip(meta.output_roles, outs)}
    return infer


def validate(model, meta: ModelMeta, samples: Sequence[Sample], device, amp: bool,
             channels_last: bool = False) -> Dict[str, float]:
    """COCO metrics of ``model`` on ``samples`` at the deployed input size (per-class clustering)."""
    model.eval()
    dets = run_images(torch_infer(model, meta, device, amp, channels_last), meta, [s.image for s in samples],
                      class_agnostic=False)
    return coco_metrics([(s.boxes, s.labels) for s in samples], dets)


#: Loss curves of the DetectNet_v2 run: history key -> legend label.
DETECTNET_LOSSES = {"loss": "total", "loss_cov": "coverage L2", "loss_bbox": "bbox L1"}


def build_meta(args) -> ModelMeta:
    return ModelMeta(input_w=args.input_w, input_h=args.input_h, stride=16, bbox_norm=args.bbox_norm,
                     cov_shrink=args.cov_shrink)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="VOC or KITTI dataset folder")
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, history, plot)")
    ap.add_argument("--epochs", type=int, default=45)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (cosine, 1 epoch warm-up)")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--crop", type=int, default=320, help="square training crop, px")
    ap.add_argument("--input-w", type=int, default=640, help="deployed input width, px (validation, export)")
    ap.add_argument("--input-h", type=int, default=368, help="deployed input height, px")
    ap.add_argument("--bbox-norm", type=float, default=35.0)
    ap.add_argument("--cov-shrink", type=float, default=0.5)
    ap.add_argument("--pos-weight", type=float, nargs=3, default=[10.0, 15.0, 15.0],
                    help="coverage L2 weight of positive cells per class (mask no_mask mask_incorrect)")
    ap.add_argument("--bbox-weight", type=float, default=2.0, help="weight of the bbox L1 term")
    ap.add_argument("--width", type=float, default=1.0, help="backbone width multiplier")
    ap.add_argument("--scale", type=float, nargs=2, default=[0.6, 2.5], help="scale jitter range (min max)")
    ap.add_argument("--p-zoom", type=float, default=0.0,
                    help="probability a crop is rescaled so one face is --zoom px wide (augment.face_zoom)")
    ap.add_argument("--zoom", type=float, nargs=2, default=[40.0, 250.0], help="face-zoom width range, px")
    ap.add_argument("--rfs", type=float, default=0.0,
                    help="repeat-factor sampling threshold (LVIS); 0 = uniform, 0.3 oversamples no_mask images")
    ap.add_argument("--init", type=Path, help="start from this checkpoint's EMA weights (fine-tuning)")
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-hex", default="01", help="validation split: md5(stem) first hex digit in this set")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (smoke tests)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    ap.add_argument("--no-val", action="store_true", help="skip per-epoch validation (smoke tests)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    precision_.add_args(ap)
    return ap.parse_args(argv)


def fit(args: argparse.Namespace, model: torch.nn.Module | None = None, ckpt_extra: Dict | None = None) -> Dict:
    """Train as configured by :func:`parse_args`; returns the history list's last entry.

    ``model``: a prebuilt DetectNetV2-compatible module (``x (B,3,H,W) -> (coverage, bbox)``) to
    train instead of building one from ``--width``/``--init`` (used by :mod:`models.train.prune` to
    fine-tune a pruned network); checkpoints then still record ``widths`` from ``--width``.
    ``ckpt_extra``: extra keys stored in ``last.pt`` and ``best.pt`` (e.g. a pruned model's
    ``arch`` and channel counts, so :func:`models.export.load_checkpoint` can rebuild it).
    """
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prec = precision_.choose(device, getattr(args, "bf16", "auto"), getattr(args, "channels_last", "auto"))
    amp = prec.bf16
    log.info("precision: %s", prec.describe())
    args.out.mkdir(parents=True, exist_ok=True)
    samples = read_dataset(args.data)
    train_s, val_s = split(samples, args.val_hex)
    write_split(args.out / "split.json", train_s, val_s, args.val_hex)
    if args.limit:
        train_s = train_s[: args.limit]
    log.info("train %d images %s, val %d images %s", len(train_s), class_counts(train_s), len(val_s), class_counts(val_s))
    meta = build_meta(args)
    geo = meta.detectnet
    widths = [max(8, int(round(w * args.width))) for w in (64, 128, 256, 512)]
    if model is None:
        model = DetectNetV2(len(CLASS_NAMES), widths)
        if args.init:
            model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=False)["ema"])
            log.info("initialised from %s", args.init)
    model = prec.model(model.to(device))
    ds = TrainSet(train_s, args.crop, geo, tuple(args.scale), args.p_zoom, args.zoom, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    sampler = None
    if args.rfs > 0:
        r = repeat_factors(train_s, args.rfs, len(CLASS_NAMES))
        sampler = WeightedRandomSampler(torch.as_tensor(r), num_samples=len(ds), replacement=True, generator=g)
        log.info("repeat-factor sampling t=%.2f: %d of %d images repeated, mean factor %.2f",
                 args.rfs, int((r > 1).sum()), len(r), float(r.mean()))
    dl = DataLoader(ds, batch_size=min(args.batch, len(ds)), shuffle=sampler is None, sampler=sampler,
                    drop_last=True, generator=g if sampler is None else None,
                    num_workers=args.workers, persistent_workers=args.workers > 0,
                    worker_init_fn=lambda w: ds.set_random_seed(args.seed * 1000 + w))
    if args.workers == 0:
        ds.set_random_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = warmup_cosine(opt, args.epochs * len(dl), max(1, int(args.warmup_epochs * len(dl))))

    def step(batch):
        x, cov_t, bbox_t = (t.to(device) for t in batch)
        with prec.autocast():
            cov, bbox = model(prec.input(x))
        loss, parts = detectnet_v2_loss(cov, bbox, cov_t, bbox_t, args.pos_weight, args.bbox_weight)
        return loss, {"loss_cov": parts["cov"], "loss_bbox": parts["bbox"]}

    loop = Loop(args, model, opt, sched, EMA(model), meta, {"widths": widths, **(ckpt_extra or {})},
                None if args.no_val else (lambda m: validate(m, meta, val_s, device, amp, prec.channels_last)),
                "mAP50_mask_no_mask", DETECTNET_LOSSES, ("AP", "mAP"), device=device)
    history = loop.run(dl, step)
    return history[-1] if history else {}


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fit(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
