"""A stand-in for systemd's notification socket: what `hearth serve` tells systemd."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.live import sleep


class NotifySocket:
    """A Unix datagram socket at `path` (NOTIFY_SOCKET), keeping every message, in order,
    as a dict of its KEY=value lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def read(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1)
                                      for line in data.decode().splitlines() if "=" in line))

    async def wait_for(self, key: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index of the first message from `after` on that carries `key`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.read()[after:], after):
                if key in message:
                    return i
            assert time.monotonic() < deadline, f"no {key} from hearth serve: {self.messages}"
            await sleep(0.05)

    def close(self) -> None:
        self.sock.close()
