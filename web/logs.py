"""Where log events go, and what they may carry.

Hearth's own events never name a client address, a token, a key or a message
body. Libraries are less careful: autobahn's debug events name the peer.
So the observer chain blanks fields that name a peer before anything is
written, and libraries never log below `info` (`--log-level debug` lowers
only Hearth's own namespaces).

Two formats (`hearth serve --log-format`):

- `text`: Twisted's own lines, for people;
- `json`: one JSON object per line (NDJSON), for collectors (journald, Loki,
  Elasticsearch, Vector): `time` (ISO 8601, UTC), `level`, `namespace`,
  `message` (the rendered sentence), `fields` (the event's named fields that
  are plain values: strings, numbers, booleans, null, lists and objects of
  those; objects such as a transport or a request are left out, never
  rendered), and `traceback` when the event carries a failure.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import provider

PEER_FIELDS = ("peer", "client", "clientAddress", "remote", "ip", "address", "host")
LEVELS = ("debug", "info", "warn", "error", "critical")
OWN_NAMESPACE = "hearth"
# Keys of Twisted's legacy (twisted.python.log) events that are bookkeeping, not fields.
_LEGACY_KEYS = ("message", "isError", "system", "format", "time")


def redacting(inner: ILogObserver) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if any(name in event for name in PEER_FIELDS):
            event = {**event, **{name: "[redacted]" for name in PEER_FIELDS if name in event}}
        inner(event)
    return observe


def _plain(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """(True, value) if `value` is made of JSON's own types only (a few levels deep)."""
    if value is None or isinstance(value, bool | int | str):
        return True, value
    if isinstance(value, float):
        return (value == value and abs(value) != float("inf")), value
    if depth < 4 and isinstance(value, list | tuple):
        items = [_plain(v, depth + 1) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if depth < 4 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        pairs = {k: _plain(v, depth + 1) for k, v in value.items()}
        return all(ok for ok, _ in pairs.values()), {k: v for k, (_, v) in pairs.items()}
    return False, None


def json_line(event: dict[str, Any]) -> str:
    """One event as one line of NDJSON (module docstring)."""
    level = event.get("log_level")
    stamp = event.get("log_time")
    when = float(stamp) if isinstance(stamp, int | float) else time.time()
    fields: dict[str, Any] = {}
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS:
            continue
        ok, plain = _plain(value)
        if ok:
            fields[key] = plain
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z",
        "level": getattr(level, "name", "info"),
        "namespace": str(event.get("log_namespace", "-")),
        "message": formatEvent(event),
        "fields": fields,
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:  # a failure that cannot render itself must not lose the line
            record["traceback"] = type(getattr(failure, "value", failure)).__name__
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def ndjson_observer(stream: IO[str]) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        stream.write(json_line(event))
        stream.flush()
    return observe


def level_filter(level: LogLevel) -> LogLevelFilterPredicate:
    """Hearth's own namespaces at `level`; libraries never below info (their debug events
    name peers and carry frames)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=max(level, LogLevel.info))
    predicate.setLogLevelForNamespace(OWN_NAMESPACE, level)
    return predicate


def observer(stream: IO[str], fmt: str, level: LogLevel | str = LogLevel.info) -> ILogObserver:
    if isinstance(level, str):
        level = LogLevel.levelWithName(level)
    out = ndjson_observer(stream) if fmt == "json" else textFileLogObserver(stream)
    return FilteringLogObserver(redacting(out), [level_filter(level)])
