"""Which speed-ups a training or validation run may use: bf16 autocast and ``channels_last``.

Both change only how the arithmetic is laid out, not what the network is, and both are fast on
some CPUs and slow or unsafe on others (measured with ``python -m models.train.bench``; figures
in ``docs/training.md``):

* **bf16 autocast** is fast only where the CPU has native bf16 instructions (AVX-512 BF16 or
  AMX: ``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``). On an AVX2-only CPU oneDNN emulates
  it and it is slower than fp32, so ``auto`` turns it on only where the flag is present.
* **channels_last** made oneDNN's convolution backward crash the process (SIGSEGV, in
  ``loss.backward()``) on a Zen-4 EPYC for the pruned ResNet-18's odd channel counts. A crash of a
  native library cannot be caught, so ``auto`` never uses it on the CPU; ``--channels-last on``
  turns it on for a machine where it has been measured safe and faster.

On CUDA ``auto`` uses both (tensor cores want NHWC and bf16).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch

#: ``/proc/cpuinfo`` flags that mean the CPU computes bf16 natively
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CHOICES = ("auto", "on", "off")


@functools.lru_cache(maxsize=1)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags of the first processor in ``cpuinfo`` (empty where the file is absent)."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX-512 BF16 or AMX-BF16."""
    return any(f in cpu_flags() for f in NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Precision:
    """The layout and number format of one run.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"``.
        bf16: run the forward pass under ``torch.autocast(dtype=torch.bfloat16)``; losses stay fp32.
        channels_last: keep the model and its input tensors in NHWC memory format.
    """

    device_type: str = "cpu"
    bf16: bool = False
    channels_last: bool = False

    def autocast(self) -> ContextManager:
        """Context manager for the forward pass (a no-op when ``bf16`` is off)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def model(self, m: torch.nn.Module) -> torch.nn.Module:
        """``m`` in this run's memory format (in place, as ``Module.to`` is)."""
        return m.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) batch in this run's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def describe(self) -> str:
        return f"{self.device_type}, {'bf16 autocast' if self.bf16 else 'fp32'}, " \
               f"{'channels_last' if self.channels_last else 'contiguous'}"


def choose(device: torch.device, bf16: str = "auto", channels_last: str = "auto") -> Precision:
    """The :class:`Precision` for ``device`` given the ``--bf16`` / ``--channels-last`` choices.

    Args:
        device: the training device.
        bf16, channels_last: ``"auto"`` (see the module docstring), ``"on"`` or ``"off"``.

    Raises:
        ValueError: a choice outside :data:`CHOICES`.
    """
    for name, v in (("bf16", bf16), ("channels_last", channels_last)):
        if v not in CHOICES:
            raise ValueError(f"{name} must be one of {', '.join(CHOICES)}, not {v!r}")
    cuda = device.type == "cuda"
    use_bf16 = {"on": True, "off": False}.get(bf16, cuda or cpu_has_native_bf16())
    use_cl = {"on": True, "off": False}.get(channels_last, cuda)
    return Precision(device.type, use_bf16, use_cl)


def add_args(ap: argparse.ArgumentParser) -> None:
    """``--bf16`` and ``--channels-last`` (each auto | on | off) for a training CLI."""
    ap.add_argument("--bf16", choices=CHOICES, default="auto",
                    help="bf16 autocast: auto = on CUDA and on CPUs with AVX-512 BF16 / AMX, else off "
                         "(emulated bf16 is slower than fp32 on AVX2 CPUs)")
    ap.add_argument("--channels-last", choices=CHOICES, default="auto",
                    help="NHWC memory format: auto = on CUDA only (on the CPU it crashed oneDNN's conv backward "
                         "for the pruned network on a Zen-4 EPYC); on = opt in where measured safe")
