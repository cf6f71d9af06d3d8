"""The servers under test, as real subprocesses: `hearth serve` and the baseline relay.

Why subprocesses: the numbers must be the deployed program's, not a test
fixture's, and the server must have a core of its own. Where `taskset`
exists (and the machine has two cores or more) the server is pinned to
core 0 and the generator, this process, to core 1, so neither steals the
other's CPU and the generator's own CPU can be reported beside the server's.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.spaces.config import to_toml

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"Open (http://[0-9.]+:(\d+)/)")
SERVER_CORE = 0
LOADGEN_CORE = 1
PASSWORD = "bench-password-not-secret"
FACILITATOR = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_listening(proc: subprocess.Popen[bytes], output: Callable[[], str], what: str,
                   timeout: float) -> int:
    """The port a server process says it listens on ("Open http://…:PORT/"), once it says so
    (also what tests/support/serving.py waits for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = URL.search(output())
        if found:
            return int(found.group(2))
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{output()}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not start:\n{output()}")


def raise_fd_limit() -> int:
    """Thousands of sockets per process; children (the servers) inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def pinning() -> bool:
    """Pin only where it means something: taskset present and at least two cores."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pin_self() -> None:
    if pinning():
        os.sched_setaffinity(0, {LOADGEN_CORE})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_seconds() -> float:
    """CPU time spent by everything on the machine (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def room_ids(count: int) -> list[str]:
    return [f"r{i}" for i in range(count)]


def hearth_config(data_dir: Path, rooms: int, capacity: int) -> dict[str, Any]:
    """A config whose limits are above the offered load, so the bench measures the relay.

    Per-connection message limits and the per-address connection cap are lifted
    (the generator is one trusted client per member, all from one address); the
    voice budget stays at the default 50 frames/s with a larger burst, so a late
    tick of the generator is not a drop; the hearing range covers the whole room
    so all 12 members hear each other.
    """
    layout = {"width": 14.0, "height": 10.0, "hearth": {"x": 7.0, "y": 5.0, "radius": 0.8},
              "circle": {"x": 7.0, "y": 5.0, "radius": 2.6, "seats": 12},
              "spawn": [[2.0, 8.5], [12.0, 8.5], [7.0, 9.2], [2.0, 1.5], [12.0, 1.5]]}
    return {
        "server": {"listen": ["tcp:0:interface=127.0.0.1"], "data_dir": str(data_dir)},
        "organisation": {"name": "Hearth bench"},
        "session": {"resume_grace_seconds": 60},
        # Every generated member comes from 127.0.0.1: the per-address cap is as high as
        # it goes rather than 0 ("no cap"), so each join still pays for the address check.
        "limits": {"messages_per_second": 10000, "message_burst": 100000,
                   "flood_strikes": 100000, "moves_per_second": 1000,
                   "connections_per_address": 100000, "http_connections_per_address": 100000},
        "movement": {"walk_speed": 50.0},
        "voice": {"hearing_range": 200.0, "max_speakers": 4, "frames_per_second": 50.0,
                  "frame_burst": 100},
        "rooms": [{"id": rid, "title": f"Bench room {rid}", "capacity": capacity,
                   "layout": layout} for rid in room_ids(rooms)],
    }


@dataclass
class Served:
    """One running server process and where it listens."""

    kind: str  # "hearth" or "baseline"
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0
    workdir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 30.0) -> int:
        self.port = wait_listening(self.proc, self.output, self.kind, timeout)
        return self.port

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, interrupt: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT) if interrupt else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *argv] if pinning() else argv


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start(kind: str, rooms: int = 60, capacity: int = 12, facilitator: bool = False,
          profile: Path | None = None) -> Served:
    """Start `hearth serve` (with a fresh config and data dir) or the baseline relay.

    With `profile`, the server runs under cProfile and writes its stats there
    when stopped with `stop(interrupt=True)` (SIGINT lets the reactor end cleanly).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"hearth-bench-{kind}-"))
    log_path = workdir / "server.log"
    env = _env()
    if kind == "hearth":
        config = workdir / "hearth.toml"
        config.write_text(to_toml(hearth_config(workdir / "data", rooms, capacity)))
        if facilitator:
            subprocess.run([sys.executable, "-m", "hearth.web.cli", "facilitator", "add", FACILITATOR,
                            "--config", str(config), "--password-file", "-"],
                           input=PASSWORD.encode(), check=True, capture_output=True, env=env,
                           cwd=ROOT, timeout=60)
        argv = ["-m", "hearth.web.cli", "serve", "--config", str(config)]
    elif kind == "baseline":
        argv = ["-m", "bench.baseline"]
    else:
        raise ValueError(kind)
    argv = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), *argv]
    out = log_path.open("wb")
    proc = subprocess.Popen(_pinned(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    out.close()
    served = Served(kind, proc, log_path, workdir=workdir)
    try:
        served.wait_ready()
    except BaseException:
        served.stop()
        raise
    return served


def cleanup(served: Served) -> None:
    served.stop()
    if served.workdir is not None:
        shutil.rmtree(served.workdir, ignore_errors=True)


def facilitator_ticket(port: int, timeout: float = 30.0) -> str:
    """Sign in as the bench facilitator over HTTP and get a one-time role ticket.

    The same path a console takes (web/auth.py): GET /login for the form's CSRF
    token and the pre-session cookie, POST /login, GET /console for the
    session's CSRF token, POST /console/ticket with it in X-CSRF-Token.
    """
    base = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login", timeout=timeout).read().decode()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    if found is None:
        raise RuntimeError("no csrf field on /login")
    form = urllib.parse.urlencode({"name": FACILITATOR, "password": PASSWORD,
                                   "csrf": found.group(1)}).encode()
    console = opener.open(f"{base}/login", data=form, timeout=timeout).read().decode()
    token = re.search(r'data-csrf="([^"]+)"', console)
    if token is None:
        raise RuntimeError("sign-in failed: no console page after POST /login")
    request = urllib.request.Request(f"{base}/console/ticket", data=b"", method="POST",
                                     headers={"X-CSRF-Token": token.group(1)})
    with contextlib.closing(opener.open(request, timeout=timeout)) as response:
        return str(json.loads(response.read())["ticket"])
