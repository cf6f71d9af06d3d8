"""The data directory: the deployment's secrets, created once, readable by Hearth alone.

secrets.json holds three random keys: `franking` (message-franking tags, so
reports stay verifiable across restarts and nodes), `cookie` (facilitator
session cookies) and `address_seed` (from which each day's salt for hashing
client addresses is derived). Written atomically with mode 0600 in a 0700
directory; never logged.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hearth.moderation.journal import write_atomically

__all__ = ["DataDirError", "Secrets", "ensure_dir", "load_secrets", "write_atomically"]

KEYS = ("franking", "cookie", "address_seed")


class DataDirError(Exception):
    pass


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
