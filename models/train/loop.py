"""The one training loop that every detector recipe of :mod:`models.train` runs.

A recipe (``detectnet_v2``, ``yolo_student``, ``yunet``, ``ultralight``, ``distill_student``; ``prune``
through ``detectnet_v2``) builds its network, data loader, optimiser and loss, then hands
:class:`Loop` a *step function*: one batch in, ``(loss, parts)`` out. The loop owns what they all share,
so it is written once:

- the optimiser step: ``zero_grad`` → ``backward`` → gradient-norm clip at 10 → ``step`` → the per-step
  learning-rate schedule (:func:`warmup_cosine`) → the EMA of the weights (:class:`EMA`);
- ``--max-steps`` (a smoke run) and ``--resume`` (from ``last.pt``: weights, EMA, optimiser, schedule,
  RNG, history);
- the epoch record: the mean of each loss part, the learning rate, the validation metrics of the EMA
  weights (every ``val_every`` epochs and at the last), the elapsed seconds;
- the files of a run: ``last.pt`` (everything ``--resume`` needs), ``best.pt`` (the EMA weights, metadata
  and metrics that :mod:`models.export` reads, written when the validation score beats the best so far),
  ``history.json``, ``curves.png``; one log line per epoch with an ETA.

The shape follows the one-trainer designs of Ultralytics (``BaseTrainer``), YOLOX (``Trainer``) and
mmengine (``Runner``): recipes differ in data, loss and metrics, not in the loop.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger("models.train")

#: A training step: one batch from the loader -> (the loss to minimise, a scalar tensor; its parts as floats).
StepFn = Callable[[Any], Tuple[torch.Tensor, Dict[str, float]]]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)


class EMA:
    """Exponential moving average of weights and BN buffers, decay ramped as ``d * (1 - exp(-step/2000))``
    (the ramp of YOLOv5's ``ModelEMA``)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        self.model = copy.deepcopy(model).eval()
        self.decay, self.step = decay, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.step += 1
        d = self.decay * (1 - math.exp(-self.step / 2000))
        msd = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def warmup_cosine(opt: torch.optim.Optimizer, total_steps: int, warm_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warm_steps`` then cosine decay to 0 at ``total_steps`` (per optimiser step;
    SGDR, Loshchilov & Hutter 2017, without restarts)."""
    warm = max(1, warm_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total_steps - warm))))


#: The validation curves of a run: AP@0.5 per class, their mean over mask / no_mask, COCO mAP@[.5:.95].
AP_CURVES = ("AP50_mask", "AP50_no_mask", "AP50_mask_incorrect", "mAP50_mask_no_mask", "mAP50_95")


def plot_curves(history: Sequence[Dict], path: Path, losses: Dict[str, str], title: str = "training loss",
                ap_prefix: str = "") -> None:
    """PNG of the training losses (``losses``: history key -> label, log scale) and the validation AP per
    epoch (the keys of :data:`AP_CURVES`, each read as ``ap_prefix + key``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, label in losses.items():
        a1.plot(ep, [h.get(k, float("nan")) for h in history], label=label)
    a1.set_yscale("log"); a1.set_xlabel("epoch"); a1.set_title(title); a1.legend(); a1.grid(alpha=0.3)
    for k in AP_CURVES:
        a2.plot(ep, [h.get(ap_prefix + k, float("nan")) for h in history], label=k)
    a2.set_xlabel("epoch"); a2.set_ylim(0, 1); a2.set_title("validation (EMA weights)"); a2.legend(fontsize=8); a2.grid(alpha=0.3)
    fig.tight_layout(); fig.savefig(path, dpi=100); plt.close(fig)


class Loop:
    """Epochs of one training run, its checkpoints and its record (see the module docstring).

    Args:
        args: the recipe's parsed options; read here: ``out`` (the run folder), ``epochs``, ``max_steps``,
            ``resume``; all of them are stored in the checkpoints (``args``) for :mod:`models.export`.
        model, opt, sched, ema: the network being trained, its optimiser, its per-step schedule, its EMA.
        meta: the model's metadata (``edge.meta.ModelMeta``), stored as JSON in both checkpoints.
        checkpoint: recipe keys stored in both checkpoints (``{"arch": ..., "net": {...}}`` or
            ``{"widths": [...]}``): what :func:`models.export.load_checkpoint` needs to rebuild the network.
        validate: EMA model -> metrics dict, or ``None`` for no validation (``--no-val``).
        score_key: the metric that picks ``best.pt`` (higher is better); an epoch without it scores
            ``-loss``, so a validated epoch always beats an unvalidated one.
        val_every: validate every this many epochs, and always at the last.
        losses: history key -> legend label of the loss curves; ``title`` heads that plot.
        ap_prefix: prefix of the AP keys in the history (``"voc_"`` for the fine-tuning recipes).
        log_prefixes: the metrics named on each epoch's log line (by prefix).
        on_epoch_start: called with the 0-based epoch index before each epoch (after a resume too),
            e.g. to reseed the dataset's augmentation for that epoch.
        device: where ``--resume`` maps the checkpoint.
        progress: a tqdm bar per epoch on stderr.
    """

    def __init__(self, args, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, ema: EMA, meta,
                 checkpoint: Dict[str, Any], validate: Optional[Callable[[torch.nn.Module], Dict[str, float]]],
                 score_key: str, losses: Dict[str, str], log_prefixes: Tuple[str, ...], title: str = "training loss",
                 ap_prefix: str = "", val_every: int = 1, on_epoch_start: Optional[Callable[[int], None]] = None,
                 device="cpu", progress: bool = True, logger: logging.Logger = log):
        self.args, self.model, self.opt, self.sched, self.ema, self.meta = args, model, opt, sched, ema, meta
        self.checkpoint, self.validate, self.score_key = checkpoint, validate, score_key
        self.losses, self.log_prefixes, self.title, self.ap_prefix = losses, log_prefixes, title, ap_prefix
        self.val_every, self.on_epoch_start, self.device, self.progress, self.log = (
            max(1, val_every), on_epoch_start, device, progress, logger)
        self.out = Path(args.out)
        self.history: List[Dict] = []
        self.best, self.step, self.start_epoch = -math.inf, 0, 0

    def resume(self) -> int:
        """Restore ``out/last.pt`` when ``args.resume`` is set and the file exists; returns the first epoch
        still to run (0-based)."""
        last = self.out / "last.pt"
        if not (getattr(self.args, "resume", False) and last.exists()):
            return self.start_epoch
        ck = torch.load(last, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"]); self.ema.model.load_state_dict(ck["ema"]); self.ema.step = ck["ema_step"]
        self.opt.load_state_dict(ck["opt"]); self.sched.load_state_dict(ck["sched"])
        torch.set_rng_state(ck["rng"])
        self.start_epoch, self.best, self.history, self.step = ck["epoch"] + 1, ck["best"], ck["history"], ck["step"]
        self.log.info("resumed from %s at epoch %d", last, self.start_epoch + 1)
        return self.start_epoch

    def _done(self) -> bool:
        max_steps = getattr(self.args, "max_steps", 0)
        return bool(max_steps and self.step >= max_steps)

    def run(self, batches: Iterable, step: StepFn, record: Optional[Dict[str, Any]] = None) -> List[Dict]:
        """Train from the resumed epoch to ``args.epochs``; returns the history (one dict per epoch).

        ``batches`` is iterated once per epoch (a ``DataLoader``); ``record`` adds constant fields to every
        epoch's record (e.g. the number of pseudo-labels)."""
        self.resume()
        epochs = self.args.epochs
        self.out.mkdir(parents=True, exist_ok=True)
        t_start = time.time() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        for epoch in range(self.start_epoch, epochs):
            if self.on_epoch_start is not None:
                self.on_epoch_start(epoch)
            self.model.train()
            sums: Dict[str, float] = {}
            n = 0
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True, mininterval=5,
                       disable=not self.progress)
            for batch in bar:
                loss, parts = step(batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                self.opt.step(); self.sched.step(); self.ema.update(self.model); self.step += 1
                parts = {**parts, "loss": float(loss.detach())}
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                bar.set_postfix(loss=f"{sums['loss'] / n:.3f}", lr=f"{self.sched.get_last_lr()[0]:.2e}")
                if self._done():
                    break
            rec = {"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()},
                   "lr": self.sched.get_last_lr()[0], **(record or {})}
            last_epoch = epoch + 1 == epochs or self._done()
            if self.validate is not None and ((epoch + 1) % self.val_every == 0 or last_epoch):
                rec.update(self.validate(self.ema.model))
            rec["elapsed_s"] = time.time() - t_start
            self.history.append(rec)
            self._end_epoch(epoch, rec)
            if self._done():
                break
        return self.history

    def _end_epoch(self, epoch: int, rec: Dict) -> None:
        score = rec.get(self.score_key, -rec["loss"])
        cargs = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()}
        meta = self.meta.to_json()
        torch.save({**self.checkpoint, "model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                    "ema_step": self.ema.step, "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                    "epoch": epoch, "best": max(self.best, score), "history": self.history, "step": self.step,
                    "rng": torch.get_rng_state(), "args": cargs, "meta": meta}, self.out / "last.pt")
        if score > self.best:
            self.best = score
            torch.save({**self.checkpoint, "ema": self.ema.model.state_dict(), "meta": meta, "epoch": epoch + 1,
                        "metrics": rec, "args": cargs}, self.out / "best.pt")
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        plot_curves(self.history, self.out / "curves.png", self.losses, self.title, self.ap_prefix)
        eta = rec["elapsed_s"] / max(1, epoch + 1) * (self.args.epochs - epoch - 1)
        self.log.info("epoch %d/%d loss %.4f %s | %.0f s elapsed, ETA %.0f s", epoch + 1, self.args.epochs, rec["loss"],
                      " ".join(f"{k} {v:.3f}" for k, v in rec.items()
                               if k.startswith(self.log_prefixes) and isinstance(v, (int, float))),
                      rec["elapsed_s"], eta)
