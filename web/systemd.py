"""systemd's notification protocol (sd_notify), spoken only when systemd asks for it.

Under `Type=notify` systemd sets NOTIFY_SOCKET (a Unix datagram socket: a path,
or `@name` in the abstract namespace) and, with `WatchdogSec=`, WATCHDOG_USEC
(and WATCHDOG_PID). Hearth then sends one datagram per state change:

- `READY=1` once every listener is up (systemd starts units ordered after
  Hearth, and `systemctl start` returns, only then);
- `RELOADING=1` when SIGHUP arrives and `READY=1` when the reload is done;
- `STOPPING=1` when a graceful stop begins;
- `WATCHDOG=1` every WATCHDOG_USEC / 2 from the reactor: a reactor that hangs
  stops the pings, and systemd kills and restarts the service;
- `STATUS=…`, a line `systemctl status` shows (never an address or a name).

Without NOTIFY_SOCKET every call is a no-op, so `hearth serve` behaves the same
anywhere else. No dependency: the protocol is one sendto().
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class Notifier:
    """Sends sd_notify datagrams to NOTIFY_SOCKET, if systemd set one."""

    log = Logger(namespace="hearth.systemd")

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]
        elif raw.startswith("/"):
            self.address = raw
        self.watchdog: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 1e6
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines; False (logged once per failure) if it failed."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(assignments).encode("utf-8"), self.address)
        except OSError as exc:
            self.log.warn("cannot notify systemd ({why})", why=exc.strerror or type(exc).__name__)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=Reloading")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=Stopping: members are told to reconnect")

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class WatchdogService(Service):
    """Pings systemd's watchdog from the reactor twice per WATCHDOG_USEC, while running."""

    def __init__(self, notifier: Notifier, reactor: Any) -> None:
        self.notifier = notifier
        self.loop = LoopingCall(notifier.ping)
        self.loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        if self.notifier.watchdog is not None:
            self.loop.start(self.notifier.watchdog / 2, now=True)

    def stopService(self) -> Any:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        return None
