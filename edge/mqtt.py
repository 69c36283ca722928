"""Events, counts and state to the site's own MQTT broker (opt-in: the ``mqtt:`` config section).

Nothing here runs unless the admin adds an ``mqtt:`` section; paho-mqtt is imported only then, by the
publisher's thread. What is published (the topic tree, every payload field, worked examples: docs/runtime.md,
"Several entrances"), under ``<prefix>`` = ``mqtt.topic_prefix`` (default ``maskwatch/<entrance>``):

=================================  =========  =======  =====================================================
topic                              QoS        retain   payload
=================================  =========  =======  =====================================================
``<prefix>/state``                 1          yes      ``online`` / ``offline`` (``offline`` is the last will)
``<prefix>/status``                1          yes      JSON: camera, fps, model and version, alarms, queue
``<prefix>/events``                mqtt.qos   no       JSON: the ``events.jsonl`` record plus ``id``
``<prefix>/counts``                mqtt.qos   yes      JSON: the hour's and the day's people per class, ``id``
``<discovery>/sensor/...``         1          yes      Home Assistant discovery (``homeassistant.enabled``)
=================================  =========  =======  =====================================================

Never a frame, a crop, an embedding or anything a face could be rebuilt from (an event's ``box`` is four pixel
coordinates, as in ``events.jsonl``).

Delivery (at least once, in order, nothing blocked): the frame loop only appends a record to a bounded
in-memory inbox (:meth:`MqttPublisher.event`, :meth:`MqttPublisher.person`: O(1), no I/O, no lock held
across I/O). The publisher thread moves each record into an on-disk queue (:class:`SpoolQueue`, SQLite
from the standard library, bounded by ``mqtt.queue_max``), publishes the queue's oldest records in order
with at most :data:`WINDOW` unacknowledged, and deletes a record only when the broker acknowledged it
(PUBACK for QoS 1, PUBCOMP for QoS 2). A lost connection re-sends every unacknowledged record from the
queue after reconnecting, so a consumer may see a record twice: each carries a stable ``id`` (the same
on every delivery, derived from the record) to drop duplicates. Records survive restarts in the queue.

The network runs on paho-mqtt's external-loop API (``loop_read``/``loop_write``/``loop_misc`` on the
client's own socket, one fresh client per connection): paho's ``loop()``/``loop_start()`` would open a
loopback TCP socket pair for wake-ups, and the appliance's only network peer is the broker.
"""
from __future__ import annotations

import collections
import datetime
import errno
import json
import logging
import os
import select
import socket
import sqlite3
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

#: most records published and not yet acknowledged by the broker
WINDOW = 20
#: most records waiting in memory for the publisher thread (it moves them to disk within milliseconds;
#: beyond this, while the disk hangs, the oldest are dropped and counted)
INBOX_MAX = 10000
#: reconnect back-off (s): the first retry after RETRY_MIN_S, doubling to RETRY_MAX_S; closing makes one
#: last attempt at once
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0
#: seconds to wait for the broker's CONNACK after the TCP (and TLS) connection is up
CONNACK_TIMEOUT_S = 10.0
#: TCP connect / TLS handshake timeout (s)
CONNECT_TIMEOUT_S = 5.0
#: namespace of the stable record ids (uuid5)
ID_NAMESPACE = uuid.UUID("6f1c1a52-7f0e-4a8e-9a55-3b2f6a0c9d11")
PAHO_REQUIREMENT = "paho-mqtt>=2.1,<3"

COUNT_CLASSES = ("mask", "no_mask", "mask_incorrect")


# ---------------------------------------------------------------------------------------------- failures

def describe_failure(kind: str, host: str, port: int, tls: bool, detail: str = "") -> str:
    """The fix an admin needs for a broker failure ``kind`` (``dns``, ``refused``, ``unreachable``,
    ``timeout``, ``tls``, ``auth``, ``protocol``, ``password_file``, ``library``, ``lost``)."""
    where = f"{host}:{port}"
    return {
        "dns": f"the name {host!r} does not resolve: check mqtt.host, the box's DNS (resolvectl status), or give "
               "the broker's IP address",
        "refused": f"nothing accepts connections at {where}: start the broker (systemctl status mosquitto, or the "
                   f"Mosquitto add-on in Home Assistant), check mqtt.port ({8883 if tls else 1883} is the usual "
                   f"{'TLS' if tls else 'plain'} port) and that the broker listens on the LAN, not only on localhost",
        "unreachable": f"no route to {where}: check the network and mqtt.host; under systemd the service needs "
                       "the network drop-in (docs/jetson.md, 'Several entrances': PrivateNetwork=no with "
                       "IPAddressAllow= the broker's address)",
        "timeout": f"{where} does not answer: a firewall drops the packets, or the broker is overloaded; check "
                   "mqtt.host/mqtt.port and the IPAddressAllow= drop-in (docs/jetson.md)",
        "tls": f"the TLS handshake with {where} failed: mqtt.tls.ca_file must be the CA that signed the broker's "
               f"certificate and mqtt.host a name (or IP) in that certificate; check with: openssl s_client "
               f"-connect {where} -CAfile CA_FILE; a port without TLS needs mqtt.tls: null",
        "auth": "the broker refused the login: check mqtt.username and the password (mqtt.password_file) against "
                "the broker's password file (mosquitto_passwd) and its ACL for the topic prefix",
        "protocol": f"the broker at {where} did not complete the MQTT handshake: is mqtt.port an MQTT port (not "
                    "a web socket or HTTP port)? a TLS port needs mqtt.tls",
        "password_file": "make mqtt.password_file readable by the service user (chown maskwatch, chmod 600)",
        "library": f"install the MQTT client library: pip install '{PAHO_REQUIREMENT}' (the 'mqtt' extra)",
        "lost": f"the connection to {where} dropped; it is retried with back-off; check the broker's log",
    }.get(kind, f"check the broker at {where} and its log")


def classify_exception(e: BaseException) -> Tuple[str, str]:
    """``(kind, detail)`` of an exception raised while connecting (see :func:`describe_failure`)."""
    if isinstance(e, socket.gaierror):
        return "dns", f"cannot resolve the host ({e.strerror or e})"
    if isinstance(e, ssl.SSLCertVerificationError):
        return "tls", f"certificate not trusted ({e.verify_message or e})"
    if isinstance(e, (ssl.SSLError, ssl.CertificateError)):
        return "tls", f"TLS error ({e})"
    if isinstance(e, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout", "connection timed out"
    if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
                                              errno.ENETDOWN, errno.EHOSTDOWN):
        return "unreachable", f"network unreachable ({e.strerror})"
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "protocol", f"the connection was closed during the handshake ({e.strerror or e})"
    if isinstance(e, OSError):
        return "unreachable", f"{e.strerror or e}"
    return "protocol", f"{type(e).__name__}: {e}"


def record_id(entrance: str, rec: Dict[str, Any]) -> str:
    """A stable id for a record: the same record of the same entrance always gets the same id (uuid5 of the
    entrance and the record's JSON without ``id``), so a consumer drops duplicates by it."""
    body = json.dumps({k: v for k, v in rec.items() if k != "id"}, sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(ID_NAMESPACE, entrance + "\n" + body))


# ---------------------------------------------------------------------------------------------- the queue

class SpoolQueue:
    """A bounded FIFO of ``(topic, payload, retain)`` records on disk (one SQLite table, WAL journal).

    Used by one thread only (the publisher's). ``seq`` orders the records; :meth:`ack` deletes one after the
    broker acknowledged it. More than ``max_rows`` records: the oldest are deleted and counted in
    :attr:`dropped`. A file that cannot be opened (read-only disk, a corrupt file that cannot be moved
    aside) falls back to an in-memory database (logged): records are then kept until the process ends.

    Args:
        path: the SQLite file (created with its folder), or ``":memory:"``.
        max_rows: the bound.
    """

    def __init__(self, path: str, max_rows: int = 100000):
        self.path, self.max_rows = str(path), int(max_rows)
        self.dropped = 0
        self.on_disk = True
        try:
            self.db = self._open(self.path)
        except sqlite3.DatabaseError as e:
            log.error("mqtt queue %s cannot be used (%s); keeping waiting records in memory only", self.path, e)
            self.db, self.on_disk = self._open(":memory:"), False
        self._len = self.db.execute("SELECT COUNT(*) FROM q").fetchone()[0]

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS q (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
                       "payload BLOB NOT NULL, retain INTEGER NOT NULL)")
            db.execute("SELECT COUNT(*) FROM q").fetchone()
            return db
        except OSError as e:
            raise sqlite3.OperationalError(str(e)) from e

    def __len__(self) -> int:
        return self._len

    def put_many(self, rows: List[Tuple[str, bytes, bool]]) -> None:
        """Append records (one transaction), then trim to ``max_rows``."""
        if not rows:
            return
        with self.db:
            self.db.executemany("INSERT INTO q (topic, payload, retain) VALUES (?, ?, ?)",
                                [(t, p, int(r)) for t, p, r in rows])
        self._len += len(rows)
        over = self._len - self.max_rows
        if over > 0:
            with self.db:
                self.db.execute("DELETE FROM q WHERE seq IN (SELECT seq FROM q ORDER BY seq LIMIT ?)", (over,))
            self._len -= over
            self.dropped += over
            log.error("mqtt queue full (%d records): dropped the %d oldest (%d in all); the broker has been "
                      "unreachable too long, or raise mqtt.queue_max", self.max_rows, over, self.dropped)

    def peek(self, after: int, n: int) -> List[Tuple[int, str, bytes, bool]]:
        """Up to ``n`` records with ``seq > after``, oldest first."""
        rows = self.db.execute("SELECT seq, topic, payload, retain FROM q WHERE seq > ? ORDER BY seq LIMIT ?",
                               (after, n)).fetchall()
        return [(s, t, bytes(p), bool(r)) for s, t, p, r in rows]

    def ack(self, seq: int) -> None:
        if self.db.execute("DELETE FROM q WHERE seq = ?", (seq,)).rowcount:
            self._len -= 1

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass


# ---------------------------------------------------------------------------------------------- publisher

class MqttPublisher:
    """Publishes alarm events, hourly counts and the appliance's state from its own thread.

    Args:
        cfg: the ``mqtt`` section (:class:`edge.config.MqttConfig`).
        queue_path: the on-disk queue (``mqtt.queue_path`` resolved by the caller).
        counts_path: ``counts.jsonl``: today's counts before this start are read from it (up to its size at
            :meth:`start`), so the published day totals survive restarts.
        model: model name, model_version: its version, classifier: the secondary classifier's name or None,
            for the status payload.

    The frame loop calls :meth:`event`, :meth:`person` and :meth:`update` (each O(1), never blocks, never
    raises); the STATUS line shows :meth:`status_text`. Attributes (read by tests and ``doctor``):
    ``state`` (``starting``, ``connecting``, ``connected``, ``down``, ``stopped``), ``failure`` (kind),
    ``detail``, ``fix``, ``delivered`` (records acknowledged), ``connects``.
    """

    def __init__(self, cfg: Any, queue_path: Path, counts_path: Optional[Path] = None, model: str = "",
                 model_version: str = "", classifier: Optional[str] = None):
        self.cfg = cfg
        self.host, self.port, self.tls = cfg.host, cfg.resolved_port(), cfg.tls is not None
        self.prefix = cfg.resolved_prefix()
        self.queue_path, self.counts_path = Path(queue_path), counts_path
        self.model, self.model_version, self.classifier = model, model_version, classifier
        self.state, self.failure, self.detail, self.fix = "starting", "", "", ""
        self.delivered = self.connects = self.inbox_dropped = self._inbox_dropped_logged = 0
        self.queued = 0
        self._inbox = collections.deque()  # type: Deque[Tuple[str, Any]]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closing_deadline = 0.0
        self._thread = None  # type: Optional[threading.Thread]
        self._status = {"camera": "starting", "fps": 0.0, "alarms": 0}  # type: Dict[str, Any]
        self._counts_size = 0
        self._hours = {}  # type: Dict[str, Dict[str, int]]
        self._t_log = -1e18
        self._logged_kind = ""
        self._client = None  # type: Any
        self._mqtt = None  # type: Any  # the paho.mqtt.client module
        self._inflight = {}  # type: Dict[int, int]  # message id -> queue seq
        self._sent_upto = 0
        self._connack = None  # type: Optional[Any]
        self._t_status = 0.0

    # ------------------------------------------------------------------ the frame loop's side
    def start(self) -> "MqttPublisher":
        try:
            self._counts_size = os.stat(str(self.counts_path)).st_size if self.counts_path else 0
        except OSError:
            self._counts_size = 0
        self._thread = threading.Thread(target=self._main, name="mqtt-publisher", daemon=True)
        self._thread.start()
        return self

    def event(self, ev: Any) -> None:
        """Queue one alarm: an :class:`edge.types.AlarmEvent` (or its record dict), published as that record
        plus ``id``. O(1); never raises."""
        try:
            rec = ev.to_dict() if hasattr(ev, "to_dict") else dict(ev)
        except Exception:  # a malformed record must not reach the frame loop as an exception
            log.exception("mqtt: cannot take this event")
            return
        self._put(("event", rec))

    def person(self, cls: str, wall: float) -> None:
        """Count one person of class ``cls`` first seen at epoch ``wall`` (as :class:`edge.events.HourlyCounts`
        does). O(1); never raises."""
        self._put(("person", (cls, wall)))

    def update(self, **status: Any) -> None:
        """The latest appliance state for the status payload (``camera``, ``fps``, ``alarms``). O(1)."""
        self._status = dict(self._status, **status)  # a new dict: the publisher thread reads a whole one

    def status_text(self) -> str:
        """A few words for the STATUS line: ``connected to HOST:PORT, 0 queued`` or why not."""
        q = f"{self.queued + len(self._inbox)} queued"
        if self.state == "connected":
            return f"mqtt connected to {self.host}:{self.port}, {q}"
        if self.failure:
            return f"mqtt {self.state}: {self.failure} ({self.detail}), {q}"
        return f"mqtt {self.state}, {q}"

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what waits (for at most ``timeout`` s), publish ``offline``, disconnect. Records still not
        delivered stay in the on-disk queue for the next start."""
        if self._thread is None:
            return
        self._closing_deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout + CONNECT_TIMEOUT_S + 2.0)
        if self._thread.is_alive():
            log.warning("mqtt: the publisher did not stop in time; %d records stay queued", self.queued)

    def _put(self, item: Tuple[str, Any]) -> None:
        if len(self._inbox) >= INBOX_MAX:
            try:
                self._inbox.popleft()
                self.inbox_dropped += 1
            except IndexError:
                pass
        self._inbox.append(item)
        self._wake.set()

    # ------------------------------------------------------------------ the publisher thread
    def _main(self) -> None:
        try:
            self._run()
        except Exception:  # the publisher must never take the appliance down with it
            log.exception("mqtt publisher stopped by an unexpected error; events and counts stay in the local log")
            self.state, self.failure, self.detail = "stopped", "internal", "see the log"

    def _run(self) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as e:
            self._fail("library", f"paho-mqtt is not installed ({e})")
            self.state = "stopped"
            return
        self._mqtt = mqtt
        self.queue = SpoolQueue(str(self.queue_path), self.cfg.queue_max)
        self.queued = len(self.queue)
        if self.queued:
            log.info("mqtt: %d records from an earlier run wait in %s", self.queued, self.queue_path)
        self._load_counts()
        retry, next_try, final_try = RETRY_MIN_S, 0.0, False
        try:
            while True:
                self._ingest()
                if self._stop.is_set():  # closing: deliver what waits, within the deadline
                    if not self.queued or time.monotonic() >= self._closing_deadline:
                        break
                    if self._client is None:  # one last attempt now, whatever the back-off says
                        if final_try or not self._connect():
                            break
                        final_try = True
                        continue
                if self._client is None:
                    now = time.monotonic()
                    if now < next_try:
                        self._wake.wait(min(0.5, next_try - now))
                        self._wake.clear()
                        continue
                    if self._connect():
                        retry = RETRY_MIN_S
                    else:
                        next_try, retry = time.monotonic() + retry, min(retry * 2, RETRY_MAX_S)
                    continue
                if not self._pump():
                    self._drop_client()
                    next_try, retry = time.monotonic() + RETRY_MIN_S, RETRY_MIN_S * 2
        finally:
            self._finish()

    def _ingest(self) -> None:
        """Move the inbox into the on-disk queue (one transaction)."""
        if self.inbox_dropped > self._inbox_dropped_logged:
            log.error("mqtt: %d records were dropped before reaching the queue (the disk queue stalled)",
                      self.inbox_dropped - self._inbox_dropped_logged)
            self._inbox_dropped_logged = self.inbox_dropped
        rows = []
        while self._inbox:
            kind, data = self._inbox.popleft()
            if kind == "event":
                rec = dict(data)
                rec["id"] = record_id(self.cfg.entrance, rec)
                rows.append((f"{self.prefix}/events", json.dumps(rec).encode("utf-8"), False))
            elif kind == "person":
                rows.append((f"{self.prefix}/counts", json.dumps(self._count(*data)).encode("utf-8"), True))
        if rows:
            try:
                self.queue.put_many(rows)
            except sqlite3.Error as e:
                log.error("mqtt queue %s failed (%s); moving to an in-memory queue", self.queue_path, e)
                old = self.queue
                self.queue = SpoolQueue(":memory:", self.cfg.queue_max)
                self.queue.on_disk = False
                try:
                    self.queue.put_many([(t, p, r) for _, t, p, r in old.peek(0, self.cfg.queue_max)])
                except sqlite3.Error:
                    pass
                old.close()
                self.queue.put_many(rows)
            self.queued = len(self.queue)

    def _count(self, cls: str, wall: float) -> Dict[str, Any]:
        hour = datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%dT%H")
        h = self._hours.setdefault(hour, {c: 0 for c in COUNT_CLASSES})
        h[cls] = h.get(cls, 0) + 1
        day = hour[:10]
        today = {c: sum(v.get(c, 0) for k, v in self._hours.items() if k.startswith(day)) for c in COUNT_CLASSES}
        for k in [k for k in self._hours if not k.startswith(day) and k < day]:
            del self._hours[k]  # only the current day is kept
        rec = {"type": "counts", "hour": hour}  # type: Dict[str, Any]
        rec.update({c: h.get(c, 0) for c in COUNT_CLASSES})
        rec["today"] = dict(today, day=day)
        rec["id"] = record_id(self.cfg.entrance, rec)
        return rec

    def _load_counts(self) -> None:
        """Today's people from ``counts.jsonl`` as it was at :meth:`start` (later lines are sent by the loop)."""
        if not self.counts_path or not self._counts_size:
            return
        day = datetime.datetime.now().strftime("%Y-%m-%d")
        needle = f'"hour": "{day}'.encode()
        try:
            with open(str(self.counts_path), "rb") as f:
                left = self._counts_size
                while left > 0:
                    line = f.readline(min(left, 1 << 16))
                    if not line:
                        break
                    left -= len(line)
                    if needle not in line:
                        continue
                    try:
                        rec = json.loads(line)
                        h = self._hours.setdefault(rec["hour"], {c: 0 for c in COUNT_CLASSES})
                        for c in COUNT_CLASSES:
                            h[c] += int(rec.get(c, 0))
                    except (ValueError, KeyError, TypeError):
                        continue
        except OSError as e:
            log.warning("mqtt: cannot read today's counts from %s (%s); the day totals start at 0", self.counts_path,
                        e)

    # ------------------------------------------------------------------ connection
    def _new_client(self) -> Any:
        mqtt, c = self._mqtt, self.cfg
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.resolved_client_id(), clean_session=True,
                             protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        client.connect_timeout = CONNECT_TIMEOUT_S
        if c.username:
            client.username_pw_set(c.username, self._password())
        if c.tls is not None:
            client.tls_set(ca_certs=c.tls.ca_file, certfile=c.tls.cert_file, keyfile=c.tls.key_file,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(f"{self.prefix}/state", "offline", qos=1, retain=True)
        client.max_inflight_messages_set(WINDOW + 10)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        return client

    def _password(self) -> Optional[str]:
        c = self.cfg
        if c.password_file:
            with open(os.path.expanduser(c.password_file), encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        return c.password

    def _connect(self) -> bool:
        """One connection attempt (blocking this thread only): TCP, TLS, CONNECT, wait for CONNACK."""
        if not self.failure:  # after a failure the state stays "down" (with its reason) while retrying
            self.state = "connecting"
        try:
            client = self._new_client()
        except OSError as e:  # password file or TLS files unreadable
            kind = "password_file" if self.cfg.password_file and getattr(e, "filename", None) and \
                os.path.expanduser(self.cfg.password_file) == e.filename else "tls"
            self._fail(kind, f"{e.strerror or e}: {getattr(e, 'filename', '') or ''}".rstrip(": "))
            return False
        except ValueError as e:
            self._fail("tls", str(e))
            return False
        self._connack = None
        try:
            client.connect(self.host, self.port, keepalive=self.cfg.keepalive_s)
        except Exception as e:
            self._fail(*classify_exception(e))
            self._close_socket(client)
            return False
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None and time.monotonic() < deadline:
            if not self._io(client, 0.1):
                break
        rc = self._connack
        if rc is None or getattr(rc, "is_failure", True):
            self._close_socket(client)
            if rc is None:
                self._fail("protocol", "no CONNACK from the broker (closed the connection or never answered)")
            else:
                name = str(rc)
                auth = getattr(rc, "value", None) in (4, 5, 134, 135) or "authori" in name.lower() \
                    or "password" in name.lower()
                self._fail("auth" if auth else "protocol", f"the broker answered: {name}")
            return False
        self._client = client
        self._inflight.clear()
        self._sent_upto = 0
        self.connects += 1
        was_down = self.failure
        self.state, self.failure, self.detail, self.fix = "connected", "", "", ""
        self._logged_kind = ""
        log.info("mqtt: connected to %s:%d%s as %s%s; %d records queued", self.host, self.port,
                 " (TLS)" if self.tls else "", self.cfg.resolved_client_id(),
                 " again" if was_down else "", self.queued)
        client.publish(f"{self.prefix}/state", "online", qos=1, retain=True)
        if self.cfg.homeassistant.enabled:
            for topic, payload in discovery_messages(self.cfg, self.model, self.model_version):
                client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self._t_status = 0.0
        return True

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        self._connack = reason_code

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any = None,
                    properties: Any = None) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self.queue.ack(seq)
            self.queued = len(self.queue)
            self.delivered += 1

    def _io(self, client: Any, timeout: float) -> bool:
        """One select() on the client's socket, then read/write/keepalive; False when the connection is gone."""
        sock = client.socket()
        if sock is None:
            return False
        try:
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                r = [sock]
            else:
                r, _, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
                r = r or []
            ok = self._mqtt.MQTT_ERR_SUCCESS
            if r and client.loop_read(100) != ok:
                return False
            if client.want_write() and client.loop_write() != ok:
                return False
            if client.loop_misc() != ok:
                return False
        except (OSError, ValueError):
            return False
        return client.socket() is not None

    def _pump(self) -> bool:
        """Publish what the window allows, read acknowledgements, send the status when due."""
        client = self._client
        room = WINDOW - len(self._inflight)
        if room > 0 and self.queued:
            for seq, topic, payload, retain in self.queue.peek(self._sent_upto, room):
                info = client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
                if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
                    return False
                self._inflight[info.mid] = seq
                self._sent_upto = seq
                if self.cfg.qos == 0:  # no acknowledgement: sent is delivered
                    self._on_publish(client, None, info.mid)
        if time.monotonic() - self._t_status >= self.cfg.status_interval_s:
            self._t_status = time.monotonic()
            client.publish(f"{self.prefix}/status", json.dumps(self._status_payload()), qos=1, retain=True)
        busy = bool(self._inbox) or (self.queued and len(self._inflight) < WINDOW and self.queued > len(self._inflight))
        if not self._io(client, 0.0 if busy else 0.1):
            self._fail("lost", "the connection dropped")
            return False
        return True

    def _status_payload(self) -> Dict[str, Any]:
        s = dict(self._status)
        return {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "entrance": self.cfg.entrance, "state": "online", "camera": s.get("camera", ""),
                "fps": round(float(s.get("fps", 0.0)), 1), "alarms": int(s.get("alarms", 0)),
                "model": self.model, "model_version": self.model_version, "classifier": self.classifier,
                "queued": self.queued, "version": _version()}

    def _drop_client(self) -> None:
        if self._client is not None:
            self._close_socket(self._client)
        self._client = None
        self._inflight.clear()
        self._sent_upto = 0
        if self.state == "connected":
            self.state = "down"

    @staticmethod
    def _close_socket(client: Any) -> None:
        sock = client.socket()
        try:
            if sock is not None:
                sock.close()
        except OSError:
            pass

    def _finish(self) -> None:
        client = self._client
        if client is not None:
            try:
                self._status = dict(self._status, camera="stopped")
                client.publish(f"{self.prefix}/status", json.dumps(dict(self._status_payload(), state="offline")),
                               qos=1, retain=True)
                info = client.publish(f"{self.prefix}/state", "offline", qos=1, retain=True)
                end = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < end and self._io(client, 0.05):
                    pass
                client.disconnect()
                self._io(client, 0.0)
            except Exception:  # shutting down: the will says offline if this did not
                log.debug("mqtt: clean disconnect failed", exc_info=True)
            self._close_socket(client)
            self._client = None
        if self.queued:
            log.warning("mqtt: %d records not delivered yet; they stay in %s for the next start", self.queued,
                        self.queue_path)
        self.state = "stopped"
        q = getattr(self, "queue", None)
        if q is not None:
            q.close()

    def _fail(self, kind: str, detail: str) -> None:
        self.state = "down" if kind != "library" else "stopped"
        self.failure, self.detail = kind, detail
        self.fix = describe_failure(kind, self.host, self.port, self.tls, detail)
        now = time.monotonic()
        if kind != self._logged_kind or now - self._t_log >= 60.0:
            self._logged_kind, self._t_log = kind, now
            log.error("mqtt: cannot publish to %s:%d (%s: %s); %d records wait in the queue, retried with "
                      "back-off. Fix: %s", self.host, self.port, kind, detail, self.queued, self.fix)


def _version() -> str:
    from edge import __version__
    return __version__


# ---------------------------------------------------------------------------------------------- Home Assistant

def discovery_messages(cfg: Any, model: str = "", model_version: str = "") -> List[Tuple[str, Dict[str, Any]]]:
    """``(topic, payload)`` of each Home Assistant MQTT discovery message (published retained on connect):
    sensors for today's people per class, the last alarm, the camera and the fps, all one device, available
    while ``<prefix>/state`` is ``online``."""
    prefix, ent = cfg.resolved_prefix(), cfg.entrance
    node = "maskwatch_" + "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in ent)
    device = {"identifiers": [node], "name": f"maskwatch {ent}", "manufacturer": "maskwatch",
              "model": f"{model} {model_version}".strip() or "maskwatch", "sw_version": _version()}
    common = {"availability_topic": f"{prefix}/state", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    sensors = []  # type: List[Tuple[str, Dict[str, Any]]]
    for cls, label in (("no_mask", "without mask today"), ("mask", "with mask today"),
                       ("mask_incorrect", "mask worn incorrectly today")):
        sensors.append((f"people_{cls}_today", {
            "name": f"People {label}", "state_topic": f"{prefix}/counts",
            "value_template": "{{ value_json.today.%s }}" % cls, "unit_of_measurement": "people",
            "state_class": "total_increasing", "icon": "mdi:face-mask" if cls == "mask" else "mdi:account-alert"}))
    sensors.append(("last_alarm", {
        "name": "Last alarm", "state_topic": f"{prefix}/events", "device_class": "timestamp",
        "value_template": "{{ value_json.time }}", "json_attributes_topic": f"{prefix}/events",
        "icon": "mdi:bell-alert"}))
    sensors.append(("camera", {"name": "Camera", "state_topic": f"{prefix}/status",
                               "value_template": "{{ value_json.camera }}", "icon": "mdi:cctv"}))
    sensors.append(("fps", {"name": "Frames per second", "state_topic": f"{prefix}/status",
                            "value_template": "{{ value_json.fps }}", "unit_of_measurement": "fps",
                            "state_class": "measurement", "icon": "mdi:speedometer"}))
    out = []
    for key, payload in sensors:
        payload = dict(common, **payload)
        payload["unique_id"] = f"{node}_{key}"
        payload["object_id"] = f"{node}_{key}"
        out.append((f"{cfg.homeassistant.discovery_prefix}/sensor/{node}/{key}/config", payload))
    return out


# ---------------------------------------------------------------------------------------------- doctor

def probe(cfg: Any, timeout: float = CONNACK_TIMEOUT_S) -> Tuple[bool, str, str, str]:
    """One connection to the broker and back, as the appliance makes it: ``(ok, kind, detail, fix)`` with
    ``kind`` "" or a failure kind of :func:`describe_failure`. Publishes nothing (the login is the test).
    For ``maskwatch doctor``."""
    pub = MqttPublisher(cfg, Path(":memory:"))
    where = f"{pub.host}:{pub.port}{' (TLS)' if pub.tls else ''}"

    def failed(kind: str, detail: str) -> Tuple[bool, str, str, str]:
        return False, kind, f"{where}: {kind}: {detail}", describe_failure(kind, pub.host, pub.port, pub.tls)

    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:
        return failed("library", f"paho-mqtt is not installed ({e})")
    pub._mqtt = mqtt
    try:
        client = pub._new_client()
    except OSError as e:
        pw = cfg.password_file and os.path.expanduser(cfg.password_file) == getattr(e, "filename", None)
        return failed("password_file" if pw else "tls", f"{e.strerror or e}: {getattr(e, 'filename', '')}")
    except ValueError as e:
        return failed("tls", str(e))
    try:
        client.connect(pub.host, pub.port, keepalive=cfg.keepalive_s)
    except Exception as e:
        pub._close_socket(client)
        return failed(*classify_exception(e))
    deadline = time.monotonic() + timeout
    while pub._connack is None and time.monotonic() < deadline:
        if not pub._io(client, 0.1):
            break
    rc = pub._connack
    try:
        if rc is not None and not rc.is_failure:
            client.disconnect()
            pub._io(client, 0.0)
    finally:
        pub._close_socket(client)
    if rc is None:
        return failed("protocol", "no CONNACK from the broker")
    if rc.is_failure:
        return failed("auth" if rc.value in (4, 5, 134, 135) else "protocol", f"the broker answered: {rc}")
    who = f" as {cfg.username}" if cfg.username else " (anonymous)"
    return True, "", f"{where}: connected{who}, topics under {cfg.resolved_prefix()}/", ""


# ---------------------------------------------------------------------------------------------- the pipeline's hook

def start_publisher(cfg: Any, model_version: str = "") -> Optional[MqttPublisher]:
    """The running publisher for a :class:`edge.config.Config`, or None when ``mqtt`` is absent (then nothing is
    imported or opened). The queue defaults to ``mqtt-queue.sqlite`` beside the events file."""
    m = cfg.mqtt
    if m is None:
        return None
    queue = Path(m.queue_path).expanduser() if m.queue_path else \
        cfg.events.resolved_path().with_name("mqtt-queue.sqlite")
    path = cfg.model.resolved_path()
    model = path.parent.name if path.name == "model.onnx" else path.stem
    classifier = None
    if cfg.model.classifier:
        c = cfg.model.resolved_classifier()
        classifier = c.parent.name if c is not None and c.name == "model.onnx" else (c.stem if c else None)
    log.info("mqtt: publishing to %s:%d under %s/ (queue %s)", m.host, m.resolved_port(), m.resolved_prefix(), queue)
    return MqttPublisher(m, queue, cfg.events.resolved_counts_path(), model, model_version, classifier).start()
