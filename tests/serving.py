"""Run `hearth serve` as a real subprocess and read what it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

URL = re.compile(r"Open (http://[0-9.]+:(\d+)/)")


class ServedHearth:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"hearth-{os.getpid()}-{time.time_ns()}.log"
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", *args], stdout=self._out,
            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.port = 0

    def wait_ready(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = URL.search(self.output())
            if found:
                self.port = int(found.group(2))
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(f"hearth serve exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"hearth serve did not start:\n{self.output()}")

    def output(self) -> str:
        return self.out_path.read_bytes().decode("utf-8", "replace")

    def log_events(self) -> list[dict[str, Any]]:
        """Events written by --log-format json (records separated by RS)."""
        events = []
        for record in self.output().split("\x1e"):
            record = record.strip()
            if record.startswith("{"):
                events.append(json.loads(record.splitlines()[0]))
        return events

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
