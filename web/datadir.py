"""The data directory: the deployment's secrets, created once, readable by Hearth alone.

secrets.json holds three random keys: `franking` (message-franking tags, so
reports stay verifiable across restarts and nodes), `cookie` (facilitator
session cookies) and `address_seed` (from which each day's salt for hashing
client addresses is derived). Written atomically with mode 0600 in a 0700
directory; never logged.

A data directory has one owner: `hearth serve` holds an exclusive lock on its
`serve.lock` (which names the owner's process id) from before it reads or
writes anything until it exits, and the kernel lets go of the lock when the
process ends, however it ends. A second server on the same directory would
replay the first one's outbox and restore or overwrite its saved rooms.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hearth.moderation.journal import write_atomically

__all__ = ["DataDirError", "DataDirInUse", "Secrets", "ensure_dir", "load_secrets", "lock_data_dir",
           "write_atomically"]

KEYS = ("franking", "cookie", "address_seed")
LOCK_FILE = "serve.lock"


class DataDirError(Exception):
    pass


class DataDirInUse(DataDirError):
    """Another process holds the data directory's lock."""


@dataclass(frozen=True)
class Secrets:
    franking: bytes
    cookie: bytes
    address_seed: bytes


def ensure_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def load_secrets(data_dir: Path, create: bool = True) -> Secrets:
    ensure_dir(data_dir)
    path = data_dir / "secrets.json"
    if not path.exists():
        if not create:
            raise DataDirError(f"{path}: missing (run `hearth init`)")
        fresh = {k: base64.b64encode(secrets.token_bytes(32)).decode() for k in KEYS}
        write_atomically(path, json.dumps(fresh, indent=1).encode())
    try:
        raw = json.loads(path.read_text())
        keys = {k: base64.b64decode(raw[k], validate=True) for k in KEYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataDirError(f"{path}: expected a JSON object with base64 keys {', '.join(KEYS)} "
                           f"({type(exc).__name__})") from None
    if any(len(v) < 32 for v in keys.values()):
        raise DataDirError(f"{path}: expected keys of at least 32 bytes")
    return Secrets(**keys)


def lock_data_dir(data_dir: Path) -> int:
    """Take the data directory's lock for this process and return its file descriptor (keep
    it open: closing it, or the process ending, lets go). DataDirInUse, naming the owner's
    process id where it can be read, when another process holds it."""
    ensure_dir(data_dir)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        pid = f" (pid {owner})" if owner.isdigit() else ""
        raise DataDirInUse(f"{data_dir} is in use by another hearth serve{pid}: a data "
                           "directory has one server; give each server its own "
                           "server.data_dir") from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
