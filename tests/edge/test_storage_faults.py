"""The disk never stops the appliance: a full disk (a small tmpfs the test mounts and fills), a read-only
events folder at start-up, the folder deleted mid-run, a torn last line, a kill -9 mid-hour, and damaged
lines in the report. The alarm still sounds, the frame loop keeps running, STATUS says so, and the events
reach the file once the disk accepts them."""
from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.events import EventLog, HourlyCounts, JsonlAppender, day_report, format_report, read_jsonl, scan_jsonl
from edge.types import AlarmEvent
from edge_helpers import LogReader, REPO, alsa_home, maskwatch_cmd, run_env, write_config


def ev(track, t="2026-03-04T10:15:00.000+00:00"):
    return AlarmEvent(time=t, frame=3, track_id=track, cls="no_mask", score=0.7, duration_s=1.0, source_t=0.1)


def _mount_tmpfs(path: Path, opts: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); needs root or CAP_SYS_ADMIN")


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, filled to the last byte by ``filler``; yields (folder, filler)."""
    mnt = tmp_path / "disk"
    _mount_tmpfs(mnt, "size=64k,mode=0777")
    filler = mnt / "filler"
    try:
        with open(filler, "wb", buffering=0) as f:
            while True:
                f.write(b"x" * 4096)
    except OSError as e:
        assert e.errno == 28
    try:
        with open(filler, "ab", buffering=0) as f:  # the last partial block too
            while True:
                f.write(b"x")
    except OSError:
        pass
    yield mnt, filler
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "size=64k,ro")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_keeps_events_in_memory_logs_once_and_writes_them_when_space_returns(full_disk, caplog):
    mnt, filler = full_disk
    log = EventLog(mnt / "events.jsonl")
    with caplog.at_level(logging.ERROR, logger="edge.events"):
        results = [log.write(ev(i)) for i in range(50)]
    assert results == [False] * 50 and not log.writable and log.file.pending == 50
    assert "No space left on device" in log.file.error
    assert len([r for r in caplog.records if "not writable" in r.getMessage()]) == 1, "one log line, not 50"
    filler.unlink()  # the admin frees space
    log.file.retry(now=time.monotonic() + 60)
    assert log.writable and log.file.pending == 0
    assert [r["track_id"] for r in read_jsonl(mnt / "events.jsonl")] == list(range(50))
    log.close()


def test_the_memory_queue_is_bounded(full_disk):
    mnt, _ = full_disk
    a = JsonlAppender(mnt / "events.jsonl", max_queue=10)
    for i in range(25):
        a.append({"i": i})
    assert a.pending == 10 and a.lost == 15
    assert [json.loads(x)["i"] for x in a.queue] == list(range(15, 25)), "the newest are kept"


def test_deleted_events_folder_is_recreated(tmp_path, caplog):
    folder = tmp_path / "state"
    log = EventLog(folder / "events.jsonl")
    log.write(ev(1))
    shutil.rmtree(folder)  # deleted mid-run
    with caplog.at_level(logging.WARNING, logger="edge.events"):
        assert log.write(ev(2)) and log.write(ev(3))
    assert any("deleted or replaced; recreating" in r.getMessage() for r in caplog.records)
    assert [r["track_id"] for r in read_jsonl(folder / "events.jsonl")] == [2, 3], "nothing went into the void"
    log.close()


def test_torn_last_line_is_not_glued_to_the_next_record(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text(json.dumps(ev(1).to_dict()) + "\n" + '{"type": "alarm", "ti', encoding="utf-8")  # power cut
    log = EventLog(p)
    log.write(ev(2))
    log.close()
    rows, bad = scan_jsonl(p)
    assert [r["track_id"] for r in rows] == [1, 2] and bad == 1


def test_report_skips_bad_bytes_and_bare_values_and_counts_them(tmp_path):
    counts = tmp_path / "counts.jsonl"
    good = {"type": "counts", "hour": "2026-03-04T10", "mask": 2, "no_mask": 1, "mask_incorrect": 0}
    with open(counts, "wb") as f:
        f.write(json.dumps(good).encode() + b"\n")
        f.write(b'{"type": "counts", "hour": "2026-03-04T11", "mask": \xff}\n')  # one bad byte
        f.write(b"42\n[1, 2]\nnull\n")  # bare JSON values
        f.write(json.dumps(dict(good, mask="many")).encode() + b"\n")  # a bad field
    events = tmp_path / "events.jsonl"
    rows = [dict(ev(1).to_dict(), time="2026-03-04T10:20:00+00:00"),
            dict(ev(2).to_dict(), time="2026-03-04T10:30:00+00:00", sounded=False, reason="cooldown"),
            dict(ev(3).to_dict(), time="2026-03-04T11:05:00+00:00", suppressed=True)]
    events.write_text("".join(json.dumps(r) + "\n" for r in rows) + "7\n", encoding="utf-8")
    rep = day_report("2026-03-04", counts, events)
    assert rep["total"] == {"mask": 2, "no_mask": 1, "mask_incorrect": 0}
    assert rep["skipped_lines"] == 6
    assert rep["alarms"] == 1 and rep["alarms_raised"] == 3
    assert rep["not_sounded"] == {"cooldown": 1, "quiet_hours": 1}
    assert rep["alarms_by_hour"]["10"] == {"raised": 2, "sounded": 1}
    text = format_report(rep)
    assert "skipped 6 damaged line(s)" in text and "cooldown 1" in text
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", "2026-03-04", "--events", str(events)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "10:00      2        1          0       2        1" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr and "YYYY-MM-DD" not in r.stderr


def _frames(folder: Path, clips, size=(1280, 720), gap=0) -> int:
    """The clips' frames (resized to ``size``) as JPEGs, with ``gap`` black frames (no one there) between."""
    folder.mkdir()
    n = 0
    for k, clip in enumerate(clips):
        for _ in range(gap if k else 0):
            cv2.imwrite(str(folder / f"{n:04d}.jpg"), np.zeros((size[1], size[0], 3), np.uint8))
            n += 1
        cap = cv2.VideoCapture(str(clip))
        while True:
            ok, img = cap.read()
            if not ok:
                break
            cv2.imwrite(str(folder / f"{n:04d}.jpg"), cv2.resize(img, size))
            n += 1
        cap.release()
    return n


def test_kill_9_mid_hour_keeps_the_people_counted_so_far(tmp_path, model_path, videos):
    # the unmasked man walks through, 2 s of no one (his track ends and he is counted), then the masked
    # woman's clip while the run goes on
    n = _frames(tmp_path / "frames", [videos["unmasked"], videos["masked_woman"]], gap=50)
    assert n == 206 + 50 + 244
    cfg = write_config(tmp_path / "c.yaml", model_path, "camera:\n  fps: 25\n")
    state = tmp_path / "state"
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(tmp_path / "frames"),
                                               "--headless", "--events", str(state / "events.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    counts = state / "counts.jsonl"
    try:
        end = time.monotonic() + 300
        while not read_jsonl(counts) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        assert proc.poll() is None, f"the run ended before a person was counted:\n{log.text[-3000:]}"
        proc.send_signal(signal.SIGKILL)  # a watchdog kill or a power cut: no shutdown flush
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped (" not in log.text, "it was killed, not stopped"
    today = datetime.date.today().isoformat()
    r = subprocess.run(maskwatch_cmd() + ["report", "--day", today, "--events", str(state / "events.jsonl"),
                                          "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    on_disk = read_jsonl(counts)  # what had been counted when the process was killed
    assert len(on_disk) >= 1 and sum(rep["total"].values()) == len(on_disk), (rep, on_disk)
    hour = on_disk[0]["hour"][11:13]
    assert sum(rep["hours"][hour].values()) >= 1
    text = subprocess.run(maskwatch_cmd() + ["report", "--day", today, "--events", str(state / "events.jsonl")],
                          capture_output=True, text=True, timeout=120).stdout
    if rep["current_hour"] == hour:  # (not when the test ran across midnight)
        assert "(current hour, still counting)" in text, text


def _listen(path: Path, msgs: list, stop: threading.Event) -> threading.Thread:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)

    def run():
        while not stop.is_set():
            try:
                msgs.append(sock.recv(65536).decode())
            except socket.timeout:
                pass
        sock.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_full_disk_at_the_first_alarm_still_sounds_and_keeps_running(tmp_path, full_disk, model_path, videos):
    mnt, filler = full_disk
    msgs, stop = [], threading.Event()
    t = _listen(tmp_path / "notify", msgs, stop)
    cfg = write_config(tmp_path / "c.yaml", model_path)
    proc = subprocess.Popen(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["unmasked"]),
                                               "--headless", "--events", str(mnt / "events.jsonl")],
                            cwd=str(REPO), env=run_env(alsa_home(tmp_path), NOTIFY_SOCKET=str(tmp_path / "notify")),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log = LogReader(proc.stderr)
    log.start()
    try:
        log.expect("cannot write events", 300)
        end = time.monotonic() + 60
        while not any("event log not writable" in m for m in msgs) and time.monotonic() < end:
            time.sleep(0.1)
        filler.unlink()  # space again: the kept event is written (by the retry or at the latest at shutdown)
        rc = proc.wait(300)
        log.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop.set()
        t.join()
    assert rc == 0, log.text[-3000:]
    assert "stopped (source ended)" in log.text and "Traceback" not in log.text
    assert log.text.count("alarm sound played") == 1, "the sound does not depend on the disk"
    assert any("event log not writable" in m for m in msgs), [m for m in msgs if m.startswith("STATUS")][-3:]
    assert len(read_jsonl(mnt / "events.jsonl")) == 1, "the event reached the disk once it had space"


def test_read_only_events_folder_at_start_up_is_reported_not_a_traceback(tmp_path, read_only_dir, model_path,
                                                                         videos):
    cfg = write_config(tmp_path / "c.yaml", model_path)
    r = subprocess.run(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["unmasked"]),
                                          "--headless", "--fast", "--events", str(read_only_dir / "ev" / "events.jsonl")],
                       cwd=str(REPO), env=run_env(alsa_home(tmp_path)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "at start-up: events:" in r.stderr and "Read-only file system" in r.stderr
    assert "stopped (source ended): 206 frames" in r.stderr
    assert r.stderr.count("alarm sound played") == 1
    assert "1 events could not be written" in r.stderr, "what is lost is said, not silent"
