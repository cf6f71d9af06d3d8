"""Run `hearth serve` as a real subprocess and read what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.servers import wait_listening


class ServedHearth:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"hearth-{os.getpid()}-{time.time_ns()}.log"
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hearth.web.cli", "serve", *args], stdout=self._out,
            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.port = 0

    # A hang guard, not a speed check: a server starting beside other test files on a busy
    # machine can take many seconds just to import; one that is stuck still fails here.
    def wait_ready(self, timeout: float = 90.0) -> int:
        self.port = wait_listening(self.proc, self.output, "hearth serve", timeout)
        return self.port

    def output(self) -> str:
        return self.out_path.read_bytes().decode("utf-8", "replace")

    def log_events(self) -> list[dict[str, Any]]:
        """Events written by --log-format json: one JSON object per line (NDJSON); the
        startup message's plain lines are not events."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    async def exited(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit without blocking the reactor (clients must see the
        close meanwhile); its return code."""
        from tests.support.live import sleep
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"hearth did not exit:\n{self.output()}"
            await sleep(0.05)
        return int(self.proc.returncode)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode
