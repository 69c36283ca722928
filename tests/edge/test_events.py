"""The event log and hourly counts: append-only JSON lines that survive restarts; the report command."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from edge.events import EventLog, HourlyCounts, day_report, format_report, read_jsonl
from edge.types import AlarmEvent
from edge_helpers import maskwatch_cmd

T10 = time.mktime((2026, 3, 4, 10, 15, 0, 0, 0, -1))
T11 = time.mktime((2026, 3, 4, 11, 5, 0, 0, 0, -1))
T12 = time.mktime((2026, 3, 4, 12, 0, 0, 0, 0, -1))


def ev(track, t="2026-03-04T10:15:00.000+00:00", suppressed=False):
    return AlarmEvent(time=t, frame=3, track_id=track, cls="no_mask", score=0.7, duration_s=1.0, source_t=0.1,
                      suppressed=suppressed)


def test_event_log_appends_across_restarts(tmp_path):
    p = tmp_path / "state" / "events.jsonl"
    log = EventLog(p)
    log.write(ev(1))
    assert len(read_jsonl(p)) == 1, "each event is flushed as it is written"
    log.close()
    log = EventLog(p)  # a restart
    log.write(ev(2))
    log.close()
    rows = read_jsonl(p)
    assert [r["track_id"] for r in rows] == [1, 2] and rows[0]["class"] == "no_mask"


def test_torn_last_line_is_skipped(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text(json.dumps(ev(1).to_dict()) + "\n" + '{"type": "alarm", "ti')
    assert len(read_jsonl(p)) == 1


def test_hourly_counts_are_written_person_by_person_and_summed_by_the_report(tmp_path):
    p = tmp_path / "counts.jsonl"
    c = HourlyCounts(p)
    c.add("mask", T10, now=T10)
    c.add("no_mask", T10, now=T10)
    # on disk at once (fsynced), not only when the hour is over: a kill -9 loses nothing counted
    assert read_jsonl(p) == [{"type": "counts", "hour": "2026-03-04T10", "mask": 1, "no_mask": 0,
                              "mask_incorrect": 0},
                             {"type": "counts", "hour": "2026-03-04T10", "mask": 0, "no_mask": 1,
                              "mask_incorrect": 0}]
    c.add("mask", T11, now=T11)
    c.flush()
    c2 = HourlyCounts(p)  # restart in the same hour: more records for 11:00, summed by the report
    c2.add("mask_incorrect", T11, now=T11)
    c2.add("mask", T11, now=T11)
    c2.flush()
    rep = day_report("2026-03-04", p)
    assert rep["hours"]["10"] == {"mask": 1, "no_mask": 1, "mask_incorrect": 0}
    assert rep["hours"]["11"] == {"mask": 2, "no_mask": 0, "mask_incorrect": 1}
    assert rep["total"] == {"mask": 3, "no_mask": 1, "mask_incorrect": 1}
    assert day_report("2026-03-05", p)["total"] == {"mask": 0, "no_mask": 0, "mask_incorrect": 0}
    text = format_report(rep)
    assert "10:00" in text and "11:00" in text and "12:00" not in text


def test_report_cli_with_png(tmp_path):
    pytest.importorskip("matplotlib")
    events = tmp_path / "events.jsonl"
    log = EventLog(events)
    log.write(ev(1))
    log.write(ev(2, suppressed=True))
    log.write(ev(3, t="2026-03-05T09:00:00.000+00:00"))
    log.close()
    c = HourlyCounts(tmp_path / "counts.jsonl")
    for cls in ("mask", "mask", "no_mask"):
        c.add(cls, T12, now=T12)
    c.flush()
    png = tmp_path / "day.png"
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", "2026-03-04", "--events", str(events), "--json",
                                          "--png", str(png)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["total"] == {"mask": 2, "no_mask": 1, "mask_incorrect": 0} and rep["alarms"] == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", "04.03.2026", "--events", str(events)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr


def test_snapshot_only_writes_where_told(tmp_path, videos):
    import cv2
    from edge.events import save_snapshot
    cap = cv2.VideoCapture(str(videos["unmasked"]))
    ok, img = cap.read()
    cap.release()
    p = save_snapshot(img, ev(4), tmp_path / "snaps")
    assert p.parent == tmp_path / "snaps" and p.suffix == ".jpg" and "track4" in p.name
    back = cv2.imread(str(p))
    assert back.shape == img.shape
