"""The servers under test, as real subprocesses: `hearth serve` and the two baseline relays
(autobahn, bench/baseline.py; Node.js ws, bench/node_relay.js).

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
import struct
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
URL = re.compile(r"Open (https?://[0-9.]+:(\d+)/)")
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


def pin_self() -> str:
    """This process (the generator) to its core, and its priority to its session's group;
    returns what was done about the priority (`group_priority`)."""
    if pinning():
        os.sched_setaffinity(0, {LOADGEN_CORE})
    note = group_priority()
    if note:
        print(f"bench: {note}", file=sys.stderr, flush=True)
    return note


AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def group_priority(autogroup: Path = AUTOGROUP, own: Path = Path("/proc/self/autogroup"),
                   setsid: Callable[[], int] = os.setsid,
                   nice: Callable[[], int] = lambda: os.getpriority(os.PRIO_PROCESS, 0),
                   leads_session: Callable[[], bool] = lambda: os.getsid(0) == os.getpid(),
                   shorten: Callable[[int], bool] | None = None) -> str:
    """Make `nice -n -10 python -m bench` rank the bench above other sessions' work.

    With Linux's autogroup on, every session is a scheduling group of its own and the
    groups share the CPU as equals whatever their processes' nice values: a negative nice
    then ranks the bench (and the servers it starts) only above its own session's other
    processes, and a test someone runs at nice 15 in another session weighs as much as
    the whole bench (measured: the autobahn relay's p99 at the light chat step 38 ms with
    the machine busy, 4 ms with the group's priority raised). So a bench started with a
    negative nice puts itself in a session of its own and gives that group its nice; when
    it cannot (it leads its process group, as a shell job does: run it under `setsid -w`)
    it says so and changes nothing, rather than raise its caller's whole session. With the
    group raised, it also asks for a short time slice (`short_slice`).
    Returns what it did, or "" when there was nothing to do."""
    level = nice()
    try:
        enabled = autogroup.read_text().strip() == "1"
    except OSError:
        enabled = False
    if level >= 0 or not enabled:
        return ""
    try:
        if not leads_session():  # (under `setsid -w` it already does)
            setsid()
    except OSError:
        return (f"nice {level} ranks this process only within its session (Linux autogroup): "
                f"run it as `nice -n {level} setsid -w ...` to rank it above other sessions")
    try:
        own.write_text(str(level))
    except OSError as error:
        return f"its scheduling group's nice was not set ({error.strerror})"
    sliced = (shorten or short_slice)(level)
    return (f"its session's scheduling group (Linux autogroup) now has nice {level}"
            + (f"; time slice {SLICE_NS // 1000} us" if sliced else ""))


# The kernel's shortest time slice for an ordinary task (Linux 6.12+, EEVDF): a task with a
# shorter slice than the one running may preempt it when it wakes, instead of waiting for
# that task's slice (~1.5 ms on two cores) to end.
SLICE_NS = int(os.environ.get("HEARTH_BENCH_SLICE_US", "100")) * 1000  # 0: the kernel's own
SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def short_slice(level: int, slice_ns: int = SLICE_NS) -> bool:
    """Ask for a short time slice for this process and what it starts later (the servers:
    children and threads inherit it) with the policy and nice it has: a server or the
    generator woken by a frame then takes the core from other sessions' work at once
    (measured at the light chat step, others busy: p99 2.4-3.1 ms against 4.9 ms). Every
    server gets it alike. False where the kernel or the machine cannot (nothing changes)."""
    import ctypes
    import platform
    if slice_ns <= 0:
        return False
    number = SCHED_SETATTR.get(platform.machine())
    if number is None:
        return False
    # struct sched_attr (VER1, 56 bytes): size, policy (SCHED_OTHER), flags, nice, priority,
    # runtime (the slice), deadline, period, util_min, util_max
    attr = ctypes.create_string_buffer(
        struct.pack("IIQiIQQQII", 56, 0, 0, level, 0, slice_ns, 0, 0, 0, 0), 56)
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.syscall(number, 0, attr, 0) == 0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue(pid: int) -> tuple[int, int]:
    """A process's main thread's time waiting on a run queue (ns) and its time slices
    (/proc/PID/schedstat; 0, 0 if it is gone or the kernel does not say)."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(fields[1]), int(fields[2])
    except (OSError, IndexError, ValueError):
        return 0, 0


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

    kind: str  # "hearth", "autobahn" or "node_ws"
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
        terminate(self.proc, signal.SIGINT if interrupt else signal.SIGTERM)


def terminate(proc: subprocess.Popen[bytes], how: int = signal.SIGTERM) -> None:
    """Stop a process the bench started: `how`, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(how)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The Node.js baseline's packages: exact versions, installed by the bench into NODE_DIR
# (never committed). bufferutil is ws's native masking; the relay reports whether it loaded.
NODE_PACKAGES = ("ws@8.23.1", "bufferutil@4.1.0")
NODE_DIR = ROOT / "bench" / ".node"


def ensure_node_ws() -> Path:
    """node_modules with the pinned ws and bufferutil (npm install the first time); raises
    with what to do when node or npm is missing."""
    modules = NODE_DIR / "node_modules"
    wanted = {name: version for name, version in (p.rsplit("@", 1) for p in NODE_PACKAGES)}
    have = {}
    for name in wanted:
        with contextlib.suppress(OSError, ValueError, KeyError):
            have[name] = json.loads((modules / name / "package.json").read_text())["version"]
    if have == wanted:
        return modules
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the Node.js ws baseline needs node and npm (Debian: apt-get install "
                           "nodejs npm), or leave it out with --sides hearth,autobahn")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error",
                    "--prefix", str(NODE_DIR), *NODE_PACKAGES], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    return modules


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench process dies (however it dies), so no
    server outlives the run that started it (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CORE), *argv] if pinning() else argv


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start(kind: str, rooms: int = 60, capacity: int = 12, facilitator: bool = False,
          profile: Path | None = None, env_extra: dict[str, str] | None = None,
          args: list[str] | None = None, wrap: list[str] | None = None,
          ready_timeout: float = 30.0) -> Served:
    """Start `hearth serve` (with a fresh config and data dir) or a baseline relay.

    With `profile`, the server runs under cProfile and writes its stats there
    when stopped with `stop(interrupt=True)` (SIGINT lets the reactor end cleanly).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"hearth-bench-{kind}-"))
    log_path = workdir / "server.log"
    env = {**_env(), **(env_extra or {})}
    if env.get("HEARTH_BENCH_NO_HIREDIS"):  # redis-py's own parser, to measure what hiredis saves
        hide = workdir / "no-hiredis"
        hide.mkdir()
        (hide / "hiredis.py").write_text("raise ImportError('hidden by the bench')\n")
        env["PYTHONPATH"] = str(hide) + os.pathsep + env["PYTHONPATH"]
    if kind == "hearth":
        config = workdir / "hearth.toml"
        config.write_text(to_toml(hearth_config(workdir / "data", rooms, capacity)))
        if facilitator:
            subprocess.run([sys.executable, "-m", "hearth.web.cli", "facilitator", "add", FACILITATOR,
                            "--config", str(config), "--password-file", "-"],
                           input=PASSWORD.encode(), check=True, capture_output=True, env=env,
                           cwd=ROOT, timeout=60)
        argv = ["-m", "hearth.web.cli", "serve", "--config", str(config), *(args or [])]
        if env.get("HEARTH_BENCH_LOOP"):  # another event loop under the reactor (bench.serve_on)
            argv = ["-m", "bench.serve_on", env["HEARTH_BENCH_LOOP"], *argv[2:]]
    elif kind == "autobahn":
        argv = ["-m", "bench.baseline"]
    elif kind == "node_ws":
        env["NODE_PATH"] = str(ensure_node_ws())
        argv = [str(ROOT / "bench" / "node_relay.js"), "0"]
    else:
        raise ValueError(kind)
    if kind == "node_ws":
        argv = [shutil.which("node") or "node", *argv]
    else:
        argv = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []),
                *argv]
    out = log_path.open("wb")
    proc = subprocess.Popen(_pinned([*(wrap or []), *argv]), stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=ROOT, preexec_fn=_die_with_parent)
    out.close()
    served = Served(kind, proc, log_path, workdir=workdir)
    try:
        served.wait_ready(ready_timeout)
        if kind == "node_ws" and "bufferutil on" not in served.output():
            raise RuntimeError(f"the Node.js relay runs without bufferutil:\n{served.output()}")
    except BaseException:
        served.stop()
        raise
    return served


@dataclass
class Redis:
    """A redis-server of the bench's own, on a free loopback port, nothing saved."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port)

    def ops(self) -> dict[str, int]:
        """Calls per command since start (INFO commandstats), e.g. {"publish": 1234}."""
        stats = self.client().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def stop(self) -> None:
        terminate(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis() -> Redis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the cross-node bench needs redis-server (Debian: apt-get install "
                           "redis-server)")
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="hearth-bench-redis-"))
    proc = subprocess.Popen(_pinned([binary, "--port", str(port), "--bind", "127.0.0.1",
                                     "--save", "", "--appendonly", "no",
                                     "--dir", str(workdir)]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)
    server = Redis(proc, port, workdir)
    deadline = time.monotonic() + 15
    while True:
        try:
            server.client().ping()
            return server
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def cleanup(served: Served) -> None:
    served.stop()
    if served.workdir is not None:
        shutil.rmtree(served.workdir, ignore_errors=True)


def metrics(port: int, timeout: float = 10.0) -> dict[str, float]:
    """`hearth serve`'s /metrics (loopback may scrape), as {"name{labels}": value}."""
    try:
        with contextlib.closing(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                                       timeout=timeout)) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


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
