"""redis-server processes for tests: one server, or a 3-master Cluster, on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.binaries import need_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server; `kill()` and `start()` again to test outages (same port)."""

    def __init__(self, workdir: Path, port: int | None = None, *extra: str) -> None:
        self.binary = need_binary("redis-server", "Redis")
        self.workdir = workdir
        self.fixed = port is not None
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or restart, on the same port); a port taken meanwhile gets another one."""
        for attempt in range(5):
            try:
                return self._start()
            except RuntimeError:
                if attempt == 4 or self.fixed:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """After kill(): the same port again, so clients reconnect to the same address."""
        self.fixed = True
        self.start()


class RedisCluster:
    """Three masters (enough to spread keys and sharded channels over slots), each with
    `replicas` replicas (to test a failover: `fail_over`)."""

    def __init__(self, workdir: Path, replicas: int = 0) -> None:
        self.replicas = replicas
        self.servers = [RedisServer(workdir / f"n{i}", None, "--cluster-enabled", "yes",
                                    "--cluster-config-file", f"nodes-{i}.conf",
                                    "--cluster-node-timeout", "2000")
                        for i in range(3 * (1 + replicas))]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def start(self) -> RedisCluster:
        for server in self.servers:
            server.start()
        cli = need_binary("redis-cli", "Redis")
        subprocess.run([cli, "--cluster", "create",
                        *[f"127.0.0.1:{s.port}" for s in self.servers],
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self._wait_ok()
        self._wait_replicas_synced()
        return self

    def _wait_replicas_synced(self) -> None:
        """Until every replica has its master's data: a replica that never finished its first
        sync counts its data as infinitely old and never fails over (cluster-replica-validity-
        factor), so a master killed before that would leave its slots down for good."""
        cli = need_binary("redis-cli", "Redis")
        deadline = time.monotonic() + 30
        while True:
            roles = [subprocess.run([cli, "-p", str(s.port), "info", "replication"],
                                    capture_output=True, text=True, timeout=10).stdout
                     for s in self.servers if s.proc is not None]
            replicas = [r for r in roles if "role:slave" in r]
            if len(replicas) == 3 * self.replicas \
                    and all("master_link_status:up" in r for r in replicas):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster's replicas did not sync")
            time.sleep(0.1)

    def _wait_ok(self) -> None:
        cli = need_binary("redis-cli", "Redis")
        deadline = time.monotonic() + 20
        while True:
            info = subprocess.run([cli, "-p", str(self.servers[0].port), "cluster", "info"],
                                  capture_output=True, text=True, timeout=10).stdout
            if "cluster_state:ok" in info:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.1)

    def kill(self) -> None:
        for server in self.servers:
            server.kill()

    def fail_over(self, key: str) -> RedisServer:
        """Kill (SIGKILL) the master that serves `key`'s slot; its replica takes over once the
        cluster notices (cluster-node-timeout, 2 s). Returns the killed server."""
        cli = need_binary("redis-cli", "Redis")
        live = next(s for s in self.servers if s.proc is not None)
        slot = subprocess.run([cli, "-p", str(live.port), "cluster", "keyslot", key],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        nodes = subprocess.run([cli, "-p", str(live.port), "cluster", "nodes"],
                               capture_output=True, text=True, timeout=10).stdout
        for line in nodes.splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for spec in fields[8:]:
                low, _, high = spec.partition("-")
                if low.isdigit() and int(low) <= int(slot) <= int(high or low):
                    port = int(fields[1].split(":")[1].split("@")[0])
                    master = next(s for s in self.servers if s.port == port)
                    master.kill()
                    return master
        raise AssertionError(f"no master serves slot {slot}")

    def healthy(self) -> bool:
        """Every live server says the cluster is ok, and every slot is served by a live master
        (right after a kill the others still say ok: they have not noticed yet)."""
        cli = need_binary("redis-cli", "Redis")
        live = [s for s in self.servers if s.proc is not None]
        dead = {s.port for s in self.servers if s.proc is None}
        for server in live:
            info = subprocess.run([cli, "-p", str(server.port), "cluster", "info"],
                                  capture_output=True, text=True, timeout=10).stdout
            if "cluster_state:ok" not in info:
                return False
        if not live:
            return False
        nodes = subprocess.run([cli, "-p", str(live[0].port), "cluster", "nodes"],
                               capture_output=True, text=True, timeout=10).stdout
        for line in nodes.splitlines():
            fields = line.split()
            port = int(fields[1].split(":")[1].split("@")[0])
            if "master" in fields[2] and len(fields) > 8 and port in dead:
                return False  # a dead master still holds slots
        return True

    def restart(self) -> None:
        """After kill(): the same ports; the nodes find each other again from their config."""
        for server in self.servers:
            server.restart()
        self._wait_ok()


# Fixtures shared by the Redis tests (imported into their modules): one server, or a
# 3-master Cluster, per test module.

@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.kill()
