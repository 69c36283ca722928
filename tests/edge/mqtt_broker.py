"""A real Mosquitto broker for the MQTT tests: started on 127.0.0.1 on free ports, with a password file
(mosquitto_passwd) and a TLS listener whose CA and server certificate this module makes (openssl CLI), and
a subscriber using the same client library as the appliance (paho-mqtt)."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

USER, PASSWORD = "entrance1", "s3cret-door"
OBSERVER, OBSERVER_PASSWORD = "observer", "watching"


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run(cmd: List[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       timeout=120)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}"


def make_ca(folder: Path, name: str) -> Tuple[Path, Path]:
    """A self-signed CA: (cert, key) PEM files."""
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
          "-keyout", str(key), "-out", str(crt)], folder)
    return crt, key


def make_server_cert(folder: Path, ca: Tuple[Path, Path]) -> Tuple[Path, Path]:
    """A server certificate for 127.0.0.1 (IP SAN) signed by ``ca``: (cert, key)."""
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
          "-out", str(csr)], folder)
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
          "-days", "2", "-extfile", str(ext), "-out", str(crt)], folder)
    return crt, key


class Broker:
    """``mosquitto`` on 127.0.0.1: ``port`` (plain, password required) and ``tls_port`` (TLS, same passwords).

    Attributes: ``ca`` (the CA certificate the test trusts), ``other_ca`` (a CA that did not sign the broker's
    certificate), ``folder``, ``log`` (the broker's log file)."""

    def __init__(self, folder: Path):
        for exe in ("mosquitto", "mosquitto_passwd", "openssl"):
            if shutil.which(exe) is None and not Path("/usr/sbin/mosquitto").exists():
                raise RuntimeError(f"{exe} is missing: apt-get install mosquitto mosquitto-clients openssl "
                                   "(.ci/run installs it)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port, self.tls_port = free_port(), free_port()
        self.ca = make_ca(self.folder, "site-ca")[0]
        self.other_ca = make_ca(self.folder, "other-ca")[0]
        crt, key = make_server_cert(self.folder, (self.ca, self.folder / "site-ca.key"))
        pw = self.folder / "passwd"
        _run(["mosquitto_passwd", "-b", "-c", str(pw), USER, PASSWORD], self.folder)
        _run(["mosquitto_passwd", "-b", str(pw), OBSERVER, OBSERVER_PASSWORD], self.folder)
        os.chmod(str(pw), 0o600)
        self.log = self.folder / "mosquitto.log"
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"user {getpass.getuser()}\n"  # as root, mosquitto would switch to its own user (no access here)
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {pw}\n"
            f"persistence true\npersistence_location {self.folder}/\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_queued_messages 100000\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n"
            f"cafile {self.ca}\ncertfile {crt}\nkeyfile {key}\n", encoding="utf-8")
        self.proc = None  # type: Optional[subprocess.Popen]

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), 0.2).close()
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not open its ports within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def yaml(self, entrance: str = "main_door", tls: bool = False, password: str = PASSWORD,
             ca: Optional[Path] = None, port: Optional[int] = None, extra: str = "") -> str:
        """An ``mqtt:`` section for this broker (the password through a chmod 600 password file)."""
        pw = self.folder / f"pw-{entrance}-{abs(hash(password))}"
        pw.write_text(password + "\n", encoding="utf-8")
        os.chmod(str(pw), 0o600)
        text = (f"mqtt:\n  host: 127.0.0.1\n  port: {port or (self.tls_port if tls else self.port)}\n"
                f"  entrance: {entrance}\n  username: {USER}\n  password_file: {pw}\n"
                f"  queue_path: {self.folder / ('queue-' + entrance + '.sqlite')}\n")
        if tls:
            text += f"  tls:\n    ca_file: {ca or self.ca}\n"
        return text + extra


class Subscriber:
    """A paho-mqtt client (the appliance's library) subscribed to ``topic`` as the observer user; keeps every
    message as ``(topic, payload bytes, retain)`` and reconnects when the broker restarts."""

    _count = 0

    def __init__(self, broker: Broker, topic: str = "maskwatch/#"):
        import paho.mqtt.client as mqtt
        self.messages = []  # type: List[Tuple[str, bytes, bool]]
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        # one client id per subscriber: two clients with one id take the id over from each other, and with a
        # persistent session (clean_session=False) the second inherits the first's subscriptions
        Subscriber._count += 1
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"test-observer-{os.getpid()}-{Subscriber._count}", clean_session=False)
        self.c.username_pw_set(OBSERVER, OBSERVER_PASSWORD)
        self.c.reconnect_delay_set(0.2, 1)
        self.topic = topic

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe(self.topic, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props=None):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.c.on_connect, self.c.on_subscribe, self.c.on_message = on_connect, on_subscribe, on_message
        self.c.connect("127.0.0.1", broker.port, keepalive=10)
        self.c.loop_start()
        assert self.subscribed.wait(20), "the test subscriber could not subscribe"

    def on(self, suffix: str) -> List[Tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def json(self, suffix: str) -> List[dict]:
        return [json.loads(p) for _, p, _ in self.on(suffix)]

    def wait(self, pred, timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
