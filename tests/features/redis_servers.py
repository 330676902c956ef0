"""Redis servers started for the tests on loopback ports: TLS (a test CA made here), an ACL user,
a Sentinel watching a master, and a 3-master Cluster. Each is started on first use and stopped at
the end of the session; the shared server of SHIPYARD_TEST_REDIS_URL is never reconfigured."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACL_USER, ACL_PASSWORD, ACL_PREFIX = "shipyard-test", "s3cret pass", "sytest:"
# what the online store needs, and nothing else: its own keys, scripts, scans and counters
# (the rule list in docs/features-online.md)
ACL_RULES = ["on", f">{ACL_PASSWORD}", f"~{ACL_PREFIX}*", "resetchannels", "-@all", "+get", "+set", "+mget",
             "+scan", "+hget", "+hset", "+hincrby", "+hgetall", "+zadd", "+zscore", "+zremrangebyscore",
             "+pexpire", "+unlink", "+del", "+evalsha", "+script|load", "+ping"]


def free_port(pair: bool = False) -> int:
    """A free loopback port; with ``pair`` also port + 10000 free (a cluster node's bus port)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not pair:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def make_test_ca(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("shipyard test CA")).issuer_name(name("shipyard test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(pem_key(key))
    return files


class RedisServers:
    """Servers started on demand; ``url(kind)`` gives an online-store URL for each kind."""

    KINDS = ("redis-tls", "redis-acl", "redis-sentinel", "redis-cluster")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: dict[str, str] = {}
        self.plain_port = 0
        self.tls_port = 0
        self.tls: dict[str, Path] = {}

    # -- processes -------------------------------------------------------------------------------
    def _start(self, args: list[str], port: int, tls: bool = False) -> None:
        log = self.root / f"redis-{port}.log"
        proc = subprocess.Popen(["redis-server", *args, "--logfile", str(log)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {port} did not start")

    def admin(self, port: int | None = None) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port or self.plain_port, socket_timeout=5)

    def _secure_server(self) -> None:
        """One server with a plain port (admin, ACL, Sentinel's master) and a TLS port."""
        if self.plain_port:
            return
        folder = self.root / "secure"
        folder.mkdir()
        self.tls = make_test_ca(folder)
        self.plain_port, self.tls_port = free_port(), free_port()
        self._start(["--bind", "127.0.0.1", "--port", str(self.plain_port), "--tls-port", str(self.tls_port),
                     "--tls-cert-file", str(self.tls["cert"]), "--tls-key-file", str(self.tls["key"]),
                     "--tls-ca-cert-file", str(self.tls["ca"]), "--tls-auth-clients", "no",
                     "--save", "", "--appendonly", "no", "--dir", str(folder)], self.plain_port)
        with self.admin() as admin:
            admin.execute_command("ACL", "SETUSER", ACL_USER, "reset", *ACL_RULES)

    def _sentinel(self) -> int:
        self._secure_server()
        port = free_port()
        folder = self.root / "sentinel"
        folder.mkdir()
        conf = folder / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                        f"sentinel monitor sytest 127.0.0.1 {self.plain_port} 1\n"
                        "sentinel down-after-milliseconds sytest 5000\n")
        self._start([str(conf), "--sentinel"], port)
        with self.admin(port) as sentinel:
            deadline = time.monotonic() + 20
            while not sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sytest"):
                if time.monotonic() > deadline:
                    raise RuntimeError("Sentinel does not know the master")
                time.sleep(0.1)
        return port

    def _cluster(self) -> list[int]:
        ports = []
        for _ in range(3):
            port = free_port(pair=True)
            folder = self.root / f"cluster-{port}"
            folder.mkdir()
            self._start(["--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
                         "--cluster-config-file", str(folder / "nodes.conf"), "--cluster-node-timeout", "5000",
                         "--save", "", "--appendonly", "no", "--dir", str(folder)], port)
            ports.append(port)
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        for port in ports:
            with self.admin(port) as node:
                while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the test cluster did not become ready")
                    time.sleep(0.1)
        return ports

    # -- URLs ------------------------------------------------------------------------------------
    def url(self, kind: str) -> str:
        if kind not in self.urls:
            if kind == "redis-tls":
                self._secure_server()
                self.urls[kind] = f"rediss://127.0.0.1:{self.tls_port}/0?ssl_ca_certs={self.tls['ca']}"
            elif kind == "redis-acl":
                self._secure_server()
                self.urls[kind] = f"redis://{ACL_USER}:{ACL_PASSWORD.replace(' ', '%20')}@127.0.0.1:{self.plain_port}/0"
            elif kind == "redis-sentinel":
                self.urls[kind] = f"redis+sentinel://127.0.0.1:{self._sentinel()}/sytest/0"
            elif kind == "redis-cluster":
                self.urls[kind] = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self._cluster())
            else:
                raise KeyError(kind)
        return self.urls[kind]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("Redis tests are enabled (SHIPYARD_TEST_REDIS_URL) but redis-server/redis-cli are not installed")
    servers = RedisServers(tmp_path_factory.mktemp("redis-servers"))
    try:
        yield servers
    finally:
        servers.stop()
