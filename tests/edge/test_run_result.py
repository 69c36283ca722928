"""RunResult.alarms is bounded (it grew by ~640 B per alarm forever); the total stays exact."""
from __future__ import annotations

import tracemalloc

from edge.pipeline import MAX_ALARMS_KEPT, RunResult
from edge.types import AlarmEvent


def _ev(i):
    return AlarmEvent(time=f"2026-03-04T10:15:{i % 60:02d}.000+00:00", frame=i, track_id=i, cls="no_mask",
                      score=0.7, duration_s=1.0, source_t=i / 25, extra={"box": [1.0, 2.0, 3.0, 4.0]})


def test_alarms_kept_in_memory_are_bounded_and_the_newest():
    res = RunResult()
    n = 3 * MAX_ALARMS_KEPT + 17
    tracemalloc.start()
    for i in range(n):
        res.add_alarm(_ev(i))
        if i == MAX_ALARMS_KEPT:
            base = tracemalloc.get_traced_memory()[0]
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert res.alarms_total == n and len(res.alarms) == MAX_ALARMS_KEPT
    assert [e.track_id for e in res.alarms] == list(range(n - MAX_ALARMS_KEPT, n))
    assert grown < 100_000, f"{grown} bytes more for {n - MAX_ALARMS_KEPT} more alarms"
