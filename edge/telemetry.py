"""Jetson telemetry through jtop (jetson-stats): temperatures, power, GPU load and throttling.

A background thread asks the jtop service for a sample every ``interval_s`` seconds, logs it, keeps the
latest one for the overlay, and warns when the board throttles. Where jtop is not installed (any x86
machine), or its service is not running, this is logged once and the appliance carries on without it.

jtop is used through ``jetson.stats``, the flat dictionary jetson-stats 4.x returns, and ``jetson.gpu``:

============================  =====================================================================
key of ``jetson.stats``       meaning (unit)
============================  =====================================================================
``Temp <sensor>``             a thermal zone in deg C, e.g. ``Temp CPU``, ``Temp GPU``, ``Temp AO``,
                              ``Temp AUX``, ``Temp thermal`` on Xavier NX (``Temp tj`` on Orin);
                              an offline sensor reads ``-256``
``Power TOT``                 board input power (mW): the ``VDD_IN`` rail on Xavier NX
``Power <rail>``              one rail (mW), e.g. ``Power VDD_CPU_GPU_CV``, ``Power VDD_SOC``
``GPU``                       GPU load (%)
``jetson_clocks``             ``"ON"`` / ``"OFF"``
``nvp model``                 the nvpmodel mode name, e.g. ``MODE_20W_6CORE``
============================  =====================================================================

``jetson.gpu`` is ``{"gpu": {"status": {"load": %, ...}, "freq": {"cur": kHz, "max": kHz, "min": kHz, ...}}}``;
its ``freq`` is copied into the sample as ``GPU freq cur`` / ``GPU freq max`` (kHz).

Throttling is reported when a temperature reaches ``warn_temp_c``, or when the GPU is busy (load >= 80 %)
while its clock runs below 85 % of the maximum the current nvpmodel allows: the thermal and
over-current governors lower the clock, the DVFS governor would raise it under load.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

log = logging.getLogger(__name__)

TEMP_OFFLINE = -256.0
BUSY_LOAD = 80.0          # % GPU load above which a clock below its maximum means throttling
CLOCK_FRACTION = 0.85     # cur / max below this while busy = throttled


@dataclass
class Sample:
    """One telemetry sample, parsed from jtop's ``stats`` dictionary.

    Attributes:
        temps: sensor name -> deg C (offline sensors left out).
        power_w: board input power (W), or None.
        rails_w: rail name -> W.
        gpu_load: GPU load (%), or None.
        gpu_freq_khz, gpu_freq_max_khz: current and allowed maximum GPU clock (kHz), or None.
        nvpmodel, jetson_clocks: the power mode name and ``ON``/``OFF``, when jtop reports them.
        throttling: reasons the board is (probably) throttling; empty when not.
        t: ``time.time()`` of the sample.
    """

    temps: Dict[str, float] = field(default_factory=dict)
    power_w: Optional[float] = None
    rails_w: Dict[str, float] = field(default_factory=dict)
    gpu_load: Optional[float] = None
    gpu_freq_khz: Optional[float] = None
    gpu_freq_max_khz: Optional[float] = None
    nvpmodel: str = ""
    jetson_clocks: str = ""
    throttling: List[str] = field(default_factory=list)
    t: float = 0.0

    @property
    def hottest(self) -> Optional[tuple]:
        """(sensor, deg C) of the hottest sensor, or None."""
        if not self.temps:
            return None
        name = max(self.temps, key=lambda k: self.temps[k])
        return name, self.temps[name]


def _num(v: Any) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def parse_stats(stats: Mapping[str, Any], warn_temp_c: float = 85.0, gpu: Optional[Mapping[str, Any]] = None,
                t: Optional[float] = None) -> Sample:
    """A :class:`Sample` from jtop's ``jetson.stats`` dictionary (and optionally ``jetson.gpu``), with the
    throttling reasons worked out against ``warn_temp_c``."""
    s = Sample(t=time.time() if t is None else t)
    for key, value in stats.items():
        if not isinstance(key, str):
            continue
        v = _num(value)
        if key.startswith("Temp ") and v is not None and v > TEMP_OFFLINE:
            s.temps[key[5:]] = v
        elif key == "Power TOT" and v is not None:
            s.power_w = v / 1000.0
        elif key.startswith("Power ") and v is not None:
            s.rails_w[key[6:]] = v / 1000.0
    s.gpu_load = _num(stats.get("GPU"))
    s.gpu_freq_khz = _num(stats.get("GPU freq cur"))
    s.gpu_freq_max_khz = _num(stats.get("GPU freq max"))
    if gpu:
        first = next(iter(gpu.values()), None)
        freq = first.get("freq", {}) if isinstance(first, Mapping) else {}
        s.gpu_freq_khz = _num(freq.get("cur")) if s.gpu_freq_khz is None else s.gpu_freq_khz
        s.gpu_freq_max_khz = _num(freq.get("max")) if s.gpu_freq_max_khz is None else s.gpu_freq_max_khz
    s.nvpmodel = str(stats.get("nvp model", "") or "")
    s.jetson_clocks = str(stats.get("jetson_clocks", "") or "")
    s.throttling = throttle_reasons(s, warn_temp_c)
    return s


def throttle_reasons(s: Sample, warn_temp_c: float) -> List[str]:
    """Why ``s`` looks throttled: hot sensors, and a busy GPU held below its clock limit."""
    out = [f"{name} {temp:.1f} C >= {warn_temp_c:g} C" for name, temp in sorted(s.temps.items())
           if temp >= warn_temp_c]
    if (s.gpu_load is not None and s.gpu_load >= BUSY_LOAD and s.gpu_freq_khz and s.gpu_freq_max_khz
            and s.gpu_freq_khz < CLOCK_FRACTION * s.gpu_freq_max_khz):
        out.append(f"GPU clock {s.gpu_freq_khz / 1000:.0f} MHz < {CLOCK_FRACTION:.0%} of "
                   f"{s.gpu_freq_max_khz / 1000:.0f} MHz at {s.gpu_load:.0f}% load")
    return out


def format_sample(s: Sample) -> str:
    """One log line: temperatures, power, GPU load and clock, power mode."""
    bits = []
    if s.temps:
        bits.append(" ".join(f"{k}={v:.1f}C" for k, v in sorted(s.temps.items())))
    if s.power_w is not None:
        bits.append(f"power {s.power_w:.2f} W")
    if s.gpu_load is not None:
        bits.append(f"GPU {s.gpu_load:.0f}%")
    if s.gpu_freq_khz:
        bits.append(f"{s.gpu_freq_khz / 1000:.0f}/{(s.gpu_freq_max_khz or 0) / 1000:.0f} MHz")
    if s.nvpmodel:
        bits.append(f"nvpmodel {s.nvpmodel}")
    if s.jetson_clocks:
        bits.append(f"jetson_clocks {s.jetson_clocks}")
    if s.throttling:
        bits.append("THROTTLING: " + "; ".join(s.throttling))
    return ", ".join(bits) or "no readings"


def overlay_text(s: Optional[Sample]) -> str:
    """The short text for the monitor: hottest sensor and board power, e.g. ``52C 8.1W``; '' without a sample.
    A throttling board gets ``THROTTLED`` appended."""
    if s is None:
        return ""
    bits = []
    hot = s.hottest
    if hot is not None:
        bits.append(f"{hot[1]:.0f}C")
    if s.power_w is not None:
        bits.append(f"{s.power_w:.1f}W")
    if s.throttling:
        bits.append("THROTTLED")
    return " ".join(bits)


def jtop_available() -> Optional[str]:
    """None when ``jtop`` can be imported, else why not (one line)."""
    try:
        import jtop  # noqa: F401  (jetson-stats; only on a Jetson)
    except ImportError as e:
        return f"jtop (jetson-stats) is not installed: {e}"
    except Exception as e:  # a broken install must not stop the appliance
        return f"jtop cannot be imported: {e}"
    return None


class Telemetry:
    """Samples jtop in a background thread.

    Args:
        interval_s: seconds between samples.
        warn_temp_c: temperature that counts as throttling (and is warned about).
        summary_s: an INFO summary line this often (each sample is logged at DEBUG).

    :attr:`latest` holds the newest :class:`Sample` (None until the first, and always None without jtop);
    :attr:`status` says what happened (``"running"``, or why there is no telemetry).
    """

    def __init__(self, interval_s: float = 5.0, warn_temp_c: float = 85.0, summary_s: float = 60.0):
        self.interval_s, self.warn_temp_c, self.summary_s = float(interval_s), float(warn_temp_c), float(summary_s)
        self.latest = None  # type: Optional[Sample]
        self.samples = 0
        self.status = "not started"
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        self._throttled = False

    def start(self) -> "Telemetry":
        """Start sampling; without jtop this logs once and returns (no thread)."""
        why = jtop_available()
        if why is not None:
            self.status = why
            from edge.sources import jetson_model
            if jetson_model() is None:
                log.info("no telemetry: not a Jetson (%s)", why)
            else:
                log.warning("no telemetry: %s (install jetson-stats: pip install jetson-stats, then "
                            "sudo jtop --install-service or reboot)", why)
            return self
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def overlay_text(self) -> str:
        return overlay_text(self.latest)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        try:
            from jtop import jtop
        except Exception as e:  # checked in start(); a race with an uninstall is still only a log line
            self.status = f"jtop cannot be imported: {e}"
            log.warning("no telemetry: %s", self.status)
            return
        try:
            jetson = jtop(interval=self.interval_s)
            jetson.start()  # raises JtopException at once when jtop.service is not active
        except Exception as e:
            self.status = f"jtop service unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
            log.warning("no telemetry: %s (sudo systemctl enable --now jtop.service)", self.status)
            return
        self.status = "running"
        log.info("telemetry: jtop sampling every %.0f s", self.interval_s)
        t_summary = 0.0
        try:
            while not self._stop.is_set():
                if not jetson.ok():
                    self.status = "jtop connection lost"
                    log.warning("telemetry: jtop connection lost; no more samples")
                    return
                try:
                    gpu = jetson.gpu
                except Exception:  # older jetson-stats: no gpu dictionary
                    gpu = None
                self._take(parse_stats(jetson.stats, self.warn_temp_c, gpu), time.monotonic() - t_summary)
                if time.monotonic() - t_summary >= self.summary_s:
                    t_summary = time.monotonic()
                self._stop.wait(self.interval_s)
        except Exception as e:
            self.status = f"telemetry failed: {e}"
            log.warning("telemetry stopped: %s", e)
        finally:
            try:
                jetson.close()
            except Exception:
                log.debug("jtop close failed", exc_info=True)

    def _take(self, s: Sample, since_summary: float) -> None:
        self.latest = s
        self.samples += 1
        line = format_sample(s)
        if s.throttling and not self._throttled:
            log.warning("telemetry: throttling: %s", line)
        elif not s.throttling and self._throttled:
            log.info("telemetry: no longer throttling: %s", line)
        elif since_summary >= self.summary_s:
            log.info("telemetry: %s", line)
        else:
            log.debug("telemetry: %s", line)
        self._throttled = bool(s.throttling)
