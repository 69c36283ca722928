"""The opt-in ``mqtt:`` section against a real Mosquitto (started here on 127.0.0.1 with a password file and a
TLS listener whose certificates the test makes; see mqtt_broker.py): a real run publishes its alarm and
counts; a broker outage loses nothing and stalls no frame; refused logins, untrusted certificates, closed and
silent ports are reported with their fix while the appliance keeps alarming; 1,000 events at once stay
bounded in memory and on disk; two entrances with Home Assistant discovery; ``maskwatch doctor``'s row."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import pytest

from edge.config import ConfigError, load, parse
from edge.events import read_jsonl
from edge.mqtt import MqttPublisher, SpoolQueue, discovery_messages
from edge.pipeline import Pipeline, RunOptions, with_overrides
from edge.systemd import Notifier
from edge_helpers import REPO, drain, maskwatch_cmd, notify_receiver, run_env, video_frames
from mqtt_broker import Broker, Subscriber, free_port

pytest.importorskip("paho.mqtt.client", reason="pip install 'paho-mqtt>=2.1,<3' (the mqtt extra; .ci/run does)")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker):
    s = Subscriber(broker)
    yield s
    s.close()


class TimedBackend:
    """The real ONNX Runtime backend, with the time of every inference (= every processed frame) kept."""

    def __init__(self, backend):
        self.b, self.meta, self.times = backend, backend.meta, []

    def infer(self, x):
        self.times.append(time.monotonic())
        return self.b.infer(x)

    def warmup(self, runs: int = 2) -> None:
        self.b.warmup(runs)

    def close(self) -> None:
        pass


def _frames(src: Path, folder: Path) -> Path:
    if not folder.exists():
        folder.mkdir(parents=True)
        for i, img in video_frames(src):
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), img)
    return folder


@pytest.fixture(scope="module")
def frames(videos, tmp_path_factory):
    """The unmasked clip as an image folder (206 frames), paced at camera.fps by a realtime run."""
    return _frames(videos["unmasked"], tmp_path_factory.mktemp("frames") / "unmasked")


# ---------------------------------------------------------------------------------------------- config

def test_mqtt_is_off_by_default_and_its_files_are_checked_like_every_key(tmp_path):
    assert load(None).mqtt is None
    assert parse("mqtt:\n").mqtt is None  # an empty section: off
    text = ("mqtt:\n  host: broker.lan\n  entrance: north\n  username: north\n  password_file: {pw}\n"
            "  tls:\n    ca_file: {ca}\n")
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    os.chmod(str(pw), 0o644)
    with pytest.raises(ConfigError) as e:
        parse(text.format(pw=pw, ca=tmp_path / "missing-ca.crt"), "c.yaml", check_files=True)
    errs = "\n".join(e.value.errors)
    assert re.search(r"mqtt\.tls\.ca_file \(line 7\): no such CA file: .*missing-ca\.crt", errs), errs
    assert re.search(r"mqtt\.password_file \(line 5\): .* readable by other users \(mode 644\); chmod 600", errs), errs
    os.chmod(str(pw), 0o600)
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    cfg = parse(text.format(pw=pw, ca=ca), check_files=True).mqtt
    assert (cfg.resolved_port(), cfg.resolved_prefix(), cfg.resolved_client_id(), cfg.qos) == \
        (8883, "maskwatch/north", "maskwatch-north", 1)
    for bad, where in (("  entrance: main/door\n", "mqtt.entrance (line 3)"), ("  qos: 3\n", "mqtt.qos (line 4)"),
                       ("  topic_prefix: site/#\n", "mqtt.topic_prefix (line 4)"),
                       ("  password: x\n", "mqtt (line 1): Value error, a password needs a username")):
        base = "mqtt:\n  host: b\n  entrance: north\n"
        with pytest.raises(ConfigError) as e:
            parse(base.replace("  entrance: north\n", bad) if "entrance" in bad else base + bad)
        assert e.value.errors[0].startswith(where), e.value.errors


# ---------------------------------------------------------------------------------------------- a real run

def test_real_run_publishes_its_one_alarm_and_the_counts_as_in_the_event_log(broker, subscriber, videos, tmp_path):
    """``maskwatch run`` (a child process, TLS to the broker) on the unmasked clip: exactly one event, whose
    payload is the events.jsonl record plus its id; the counts equal counts.jsonl; online then offline."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(broker.yaml("main_door", tls=True, extra="  status_interval_s: 5\n"), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    r = subprocess.run(maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["unmasked"]), "--headless",
                                          "--fast", "--events", str(events)],
                       cwd=str(REPO), env=run_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mqtt: connected to 127.0.0.1" in r.stderr, r.stderr[-3000:]
    logged = read_jsonl(events)
    assert len(logged) == 1 and logged[0]["class"] == "no_mask", logged
    assert subscriber.wait(lambda: subscriber.on("main_door/state")[-1:] == [("maskwatch/main_door/state",
                                                                             b"offline", False)], 30)
    published = subscriber.json("main_door/events")
    assert len(published) == 1, published
    ev = dict(published[0])
    assert re.fullmatch(r"[0-9a-f-]{36}", ev.pop("id"))
    assert ev == logged[0]
    counts = subscriber.json("main_door/counts")
    people = read_jsonl(events.with_name("counts.jsonl"))
    assert counts and len(counts) == len(people), (counts, people)
    last = counts[-1]
    for c in ("mask", "no_mask", "mask_incorrect"):
        assert last[c] == sum(p[c] for p in people if p["hour"] == last["hour"])
        assert last["today"][c] == sum(p[c] for p in people if p["hour"].startswith(last["today"]["day"]))
    assert last["no_mask"] >= 1
    status = subscriber.json("main_door/status")
    assert status and status[0]["model"] == "ultralight_mask" and status[-1]["state"] == "offline"
    assert [p for _, p, _ in subscriber.on("main_door/state")][:1] == [b"online"]
    nothing_else = {t.rsplit("/", 1)[1] for t, _, _ in subscriber.messages}
    assert nothing_else <= {"state", "status", "events", "counts"}, nothing_else
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("*.jpg"))


# ---------------------------------------------------------------------------------------------- outage

def test_broker_outage_loses_no_event_and_stalls_no_frame(broker, subscriber, backend, frames, tmp_path, capsys):
    """A real pipeline at 10 fps on the unmasked clip's frames; a side thread raises 30 alarm records a
    second through the publisher's frame-loop entry (the clip has one real alarm); the broker is stopped
    after 4 s and restarted 8 s later. Every event arrives (deduplicated by id, in order) and the frames
    kept coming during the outage."""
    cfg = with_overrides(parse(broker.yaml("outage", extra="  status_interval_s: 5\n")), source=str(frames),
                         headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.fps = 10.0
    timed = TimedBackend(backend)
    pipe = Pipeline(cfg, RunOptions(sound=False), backend=timed)
    runner = threading.Thread(target=pipe.run)
    runner.start()
    end = time.monotonic() + 60
    while (pipe.mqtt is None or pipe.mqtt.state != "connected") and time.monotonic() < end:
        time.sleep(0.05)
    assert pipe.mqtt.state == "connected", pipe.mqtt.status_text()
    raised, enough = [], threading.Event()

    def raise_events():
        i = 0
        while not enough.is_set():
            rec = {"type": "alarm", "time": f"synthetic-{i}", "frame": -1, "track_id": 10000 + i, "class": "no_mask",
                   "score": 0.9, "duration_s": 0.5, "source_t": 0.0, "suppressed": False, "sounded": True,
                   "reason": None}
            pipe.mqtt.event(rec)
            raised.append(rec)
            i += 1
            time.sleep(1 / 30)

    side = threading.Thread(target=raise_events)
    side.start()
    time.sleep(4)
    t_down = time.monotonic()
    broker.stop()
    before = len(raised)
    time.sleep(8)
    during = len(raised) - before
    t_up = time.monotonic()
    runner_alive_at_restart = runner.is_alive()
    broker.start()
    time.sleep(3)
    enough.set()  # before the clip ends: a record raised after the publisher closed would wait for the next start
    side.join(10)
    runner.join(120)
    assert not runner.is_alive()
    res = pipe.result
    assert res.alarms_total == 1 and res.reason == "source ended"
    total = len(raised) + 1
    assert subscriber.wait(lambda: len({e["id"] for e in subscriber.json("outage/events")}) >= total, 60), \
        (total, len({e["id"] for e in subscriber.json("outage/events")}), pipe.mqtt.status_text(), pipe.mqtt.delivered,
         pipe.mqtt.connects, pipe.mqtt.state, broker.log.read_text()[-1500:])
    got = subscriber.json("outage/events")
    ids, first = set(), []
    for e in got:
        if e["id"] not in ids:
            ids.add(e["id"])
            first.append(e)
    synthetic = [e["time"] for e in first if e["time"].startswith("synthetic-")]
    assert synthetic == [r["time"] for r in raised], "not all delivered, or out of order"
    assert [e for e in first if not e["time"].startswith("synthetic-")][0]["class"] == "no_mask"
    t = timed.times
    gaps = [(b - a, a) for a, b in zip(t, t[1:])]
    outage = [g for g, a in gaps if t_down <= a <= t_up]
    elsewhere = sorted(g for g, a in gaps if not t_down <= a <= t_up)
    with capsys.disabled():
        print(f"\noutage test: {total} events queued ({during} raised while the broker was down for "
              f"{t_up - t_down:.1f} s), {len(ids)} delivered, {len(got) - len(ids)} duplicates dropped by id; "
              f"frames: {res.frames} processed, {res.dropped} dropped; longest frame gap during the outage "
              f"{max(outage) * 1000:.0f} ms (median {sorted(outage)[len(outage) // 2] * 1000:.0f} ms), "
              f"elsewhere {elsewhere[-1] * 1000:.0f} ms (median {elsewhere[len(elsewhere) // 2] * 1000:.0f} ms)")
    assert runner_alive_at_restart, "the clip ended before the broker came back"
    span = t[-1] - t[0] - (t_up - t_down)
    assert len(outage) / (t_up - t_down) >= 0.5 * len(elsewhere) / span, "fewer frames during the outage"
    assert max(outage) < 2.0, f"a frame waited {max(outage):.2f} s during the outage"
    assert pipe.mqtt.connects >= 2 and pipe.mqtt.queued == 0


# ---------------------------------------------------------------------------------------------- refusals

def _silent_port():
    """A TCP port that accepts connections and never says a word (a hung broker)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


@pytest.mark.parametrize("case", ["wrong_password", "wrong_ca", "closed_port", "silent_port"])
def test_refusals_are_reported_with_a_fix_and_the_appliance_keeps_alarming(case, broker, backend, frames, tmp_path,
                                                                           caplog):
    silent = _silent_port() if case == "silent_port" else None
    yaml = {"wrong_password": lambda: broker.yaml(case, password="not-the-password"),
            "wrong_ca": lambda: broker.yaml(case, tls=True, ca=broker.other_ca),
            "closed_port": lambda: broker.yaml(case, port=free_port()),
            "silent_port": lambda: broker.yaml(case, port=silent.getsockname()[1])}[case]()
    kind, fix = {"wrong_password": ("auth", "mosquitto_passwd"), "wrong_ca": ("tls", "mqtt.tls.ca_file must be"),
                 "closed_port": ("refused", "start the broker"),
                 "silent_port": ("protocol", "is mqtt.port an MQTT port")}[case]
    cfg = with_overrides(parse(yaml), source=str(frames), headless=True, events=str(tmp_path / "events.jsonl"))
    cfg.camera.fps = 10.0 if case == "silent_port" else 20.0  # a silent broker is given up on after 10 s
    sock = notify_receiver(tmp_path / "notify")
    timed = TimedBackend(backend)
    pipe = Pipeline(cfg, RunOptions(sound=False), backend=timed, notifier=Notifier(str(tmp_path / "notify")))
    msgs, done = [], threading.Event()

    def receive():  # the notify socket holds only ~512 datagrams (WATCHDOG=1 each loop): read while it runs
        while not done.is_set():
            msgs.extend(drain(sock))

    reader = threading.Thread(target=receive)
    reader.start()
    try:
        with caplog.at_level("ERROR", logger="edge.mqtt"):
            res = pipe.run()
    finally:
        done.set()
        reader.join(10)
        sock.close()
        if silent is not None:
            silent.close()
    assert res.reason == "source ended" and res.alarms_total == 1
    assert len(read_jsonl(tmp_path / "events.jsonl")) == 1
    assert pipe.mqtt.failure == kind and fix in pipe.mqtt.fix, (pipe.mqtt.failure, pipe.mqtt.detail)
    logged = [r.getMessage() for r in caplog.records if r.name == "edge.mqtt"]
    assert any(f"({kind}:" in m and "Fix: " in m and fix in m for m in logged), logged
    status = [m for m in msgs if "STATUS=" in m and "mqtt" in m]
    assert status and f"mqtt down: {kind}" in status[-1], msgs[-3:]
    gaps = [b - a for a, b in zip(timed.times, timed.times[1:])]
    assert max(gaps) < 2.0, f"a frame waited {max(gaps):.2f} s for the broker"
    assert len(SpoolQueue(str(cfg.mqtt.queue_path))) >= 2  # the event and the count wait on disk for the broker


# ---------------------------------------------------------------------------------------------- load

def test_a_thousand_events_at_once_are_queued_on_disk_and_delivered_with_bounded_memory(broker, subscriber,
                                                                                         tmp_path, capsys):
    cfg = parse(broker.yaml("load")).mqtt
    broker.stop()
    pub = MqttPublisher(cfg, Path(cfg.queue_path)).start()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        for i in range(1000):
            pub.event({"type": "alarm", "time": f"load-{i}", "frame": i, "track_id": i, "class": "no_mask",
                       "score": 0.9, "duration_s": 0.5, "source_t": i / 30, "suppressed": False, "sounded": True,
                       "reason": None})
        enqueue_ms = (time.perf_counter() - t0) * 1000
        end = time.monotonic() + 30
        while pub.queued < 1000 and time.monotonic() < end:
            time.sleep(0.05)
        assert pub.queued == 1000 and len(SpoolQueue(cfg.queue_path)) == 1000  # on disk, broker down
        broker.start()
        assert subscriber.wait(lambda: len(subscriber.on("load/events")) >= 1000, 60), pub.status_text()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        pub.close()
    got = [e["time"] for e in subscriber.json("load/events")]
    assert got == [f"load-{i}" for i in range(1000)]
    assert pub.delivered == 1000 and pub.queued == 0
    with capsys.disabled():
        print(f"\nload test: 1000 events enqueued in {enqueue_ms:.1f} ms, delivered in order; peak Python heap "
              f"growth {peak / 2 ** 20:.2f} MiB")
    assert peak < 8 * 2 ** 20, f"{peak / 2 ** 20:.1f} MiB"


def test_the_on_disk_queue_is_bounded_and_drops_the_oldest(tmp_path):
    q = SpoolQueue(str(tmp_path / "q.sqlite"), max_rows=100)
    for i in range(10):
        q.put_many([("t", json.dumps({"i": i * 100 + j}).encode(), False) for j in range(100)])
    assert len(q) == 100 and q.dropped == 900
    rows = q.peek(0, 1000)
    assert [json.loads(p)["i"] for _, _, p, _ in rows] == list(range(900, 1000))
    q.ack(rows[0][0])
    q.close()
    assert len(SpoolQueue(str(tmp_path / "q.sqlite"))) == 99  # survives a restart


# ---------------------------------------------------------------------------------------------- two entrances, HA

def test_two_entrances_with_home_assistant_discovery(broker, subscriber, tmp_path):
    pubs = []
    for name in ("north", "south"):
        cfg = parse(broker.yaml(name, extra="  homeassistant:\n    enabled: true\n")).mqtt
        pubs.append(MqttPublisher(cfg, Path(cfg.queue_path), model="ultralight_mask", model_version="1.1.0").start())
    pubs[0].person("no_mask", time.time())
    pubs[1].person("mask", time.time())
    for p in pubs:
        p.close()
    want = {"maskwatch/north/counts", "maskwatch/south/counts"}  # delivered to the subscriber after close: wait
    subscriber.wait(lambda: want <= {m[0] for m in list(subscriber.messages)}, 20)
    with subscriber.lock:  # (retained counts of the other tests' entrances come too)
        msgs = [m for m in subscriber.messages if m[0].startswith(("maskwatch/north/", "maskwatch/south/"))]
    assert {t for t, _, _ in msgs if t.endswith("/counts")} == {"maskwatch/north/counts", "maskwatch/south/counts"}
    # discovery is on homeassistant/#, which the fixture does not subscribe to: read it retained
    ha = Subscriber(broker, "homeassistant/#")
    try:
        assert ha.wait(lambda: len(ha.on("/config")) >= 12, 20)
        configs = {t: json.loads(p) for t, p, _ in ha.messages if t.startswith("homeassistant/")}
    finally:
        ha.close()
    assert set(configs) == {t for p in pubs for t, _ in discovery_messages(p.cfg)}
    north = configs["homeassistant/sensor/maskwatch_north/people_no_mask_today/config"]
    assert north["state_topic"] == "maskwatch/north/counts" and north["availability_topic"] == "maskwatch/north/state"
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    counts = {t: json.loads(p) for t, p, _ in msgs if t.endswith("/counts")}
    assert counts["maskwatch/north/counts"]["today"]["no_mask"] == 1
    assert counts["maskwatch/south/counts"]["today"]["mask"] == 1


# ---------------------------------------------------------------------------------------------- doctor

def test_doctor_row_names_each_failure_and_its_fix(broker, tmp_path):
    from edge.doctor import check_mqtt
    assert check_mqtt(load(None)).status == "SKIP"
    rows = {}
    for name, yaml in (("ok", broker.yaml("doc", tls=True)), ("auth", broker.yaml("doc", password="nope")),
                       ("tls", broker.yaml("doc", tls=True, ca=broker.other_ca)),
                       ("refused", broker.yaml("doc", port=free_port())),
                       ("dns", broker.yaml("doc").replace("host: 127.0.0.1", "host: no-such-broker.invalid"))):
        rows[name] = check_mqtt(parse(yaml))
    assert rows["ok"].status == "PASS" and "(TLS): connected as entrance1" in rows["ok"].detail
    assert rows["auth"].status == "FAIL" and "mosquitto_passwd" in rows["auth"].fix
    assert rows["tls"].status == "FAIL" and "certificate" in rows["tls"].detail
    assert "openssl s_client" in rows["tls"].fix
    assert rows["refused"].status == "WARN" and "start the broker" in rows["refused"].fix
    assert rows["dns"].status == "WARN" and "does not resolve" in rows["dns"].fix


# ---------------------------------------------------------------------------------------------- privacy

def test_with_mqtt_the_only_connection_is_to_the_broker(broker, videos, tmp_path):
    """``maskwatch run`` under strace: every AF_INET/AF_INET6 connect() goes to the broker's address and port."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is missing: apt-get install strace (.ci/run installs it)")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(broker.yaml("privacy"), encoding="utf-8")
    trace = tmp_path / "strace.txt"
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace)]
                       + maskwatch_cmd() + ["run", "-c", str(cfg), "--source", str(videos["unmasked"]),
                                            "--headless", "--fast", "--max-frames", "120",
                                            "--events", str(tmp_path / "events.jsonl")],
                       cwd=str(REPO), env=run_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mqtt: connected to 127.0.0.1" in r.stderr, r.stderr[-3000:]
    inet = [line for line in trace.read_text().splitlines() if re.search(r"connect\(\d+, \{sa_family=AF_INET6?", line)]
    assert inet, "no connect() at all: the publisher did not run"
    peers = {(m.group(2), m.group(1)) for m in (re.search(r"sin6?_port=htons\((\d+)\).*?inet_(?:addr|pton)\("
                                                          r"(?:AF_INET6?, )?\"([^\"]+)\"", line) for line in inet)
             if m}
    assert len(peers) == 1 and peers == {("127.0.0.1", str(broker.port))}, inet


def test_the_commented_example_section_is_valid_and_the_service_stays_offline_by_default():
    from edge.config import EXAMPLE_CONFIG
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    block = text[text.index("# mqtt:"):].splitlines()
    yaml = "\n".join(line[2:] for line in block if line.startswith("# ") and not line[2:].lstrip().startswith("#"))
    m = parse(yaml).mqtt
    assert (m.host, m.entrance, m.tls.ca_file, m.qos, m.homeassistant.enabled) == \
        ("broker.lan", "main_door", "/etc/maskwatch/mqtt-ca.crt", 1, False)
    unit = (REPO / "systemd" / "maskwatch.service").read_text()
    assert re.search(r"^PrivateNetwork=yes$", unit, re.M) and "IPAddressAllow" not in unit
    install = (REPO / "scripts" / "install.sh").read_text()
    assert "PrivateNetwork" not in install and "IPAddressAllow" not in install and "maskwatch.service.d" not in install
    jetson = (REPO / "docs" / "jetson.md").read_text()
    assert "PrivateNetwork=no\nIPAddressDeny=any\nIPAddressAllow=10.0.0.5\n" in jetson
