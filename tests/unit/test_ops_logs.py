"""--log-format json is plain NDJSON a collector reads as is; --log-level filters; peers are
never written."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure

from hearth.web.logs import LEVELS, json_line, observer


def logged(fmt: str = "json", level: str = "info") -> tuple[io.StringIO, Logger]:
    out = io.StringIO()
    publisher = LogPublisher(observer(out, fmt, level))
    return out, Logger(namespace="hearth.test", observer=publisher)


def test_one_json_object_per_line_with_the_rendered_message_and_plain_fields() -> None:
    out, log = logged()
    log.info("room {room} restored: {count} members may resume", room="circle", count=3,
             transport=object(), nested={"a": [1, 2.5, None]})
    log.warn("second line")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("{") for line in lines)
    first = json.loads(lines[0])
    assert set(first) == {"time", "level", "namespace", "message", "fields"}
    assert first["level"] == "info" and first["namespace"] == "hearth.test"
    assert first["message"] == "room circle restored: 3 members may resume"
    assert first["fields"] == {"room": "circle", "count": 3, "nested": {"a": [1, 2.5, None]}}
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert json.loads(lines[1])["level"] == "warn"


def test_a_failure_carries_its_traceback() -> None:
    out, log = logged()
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("the purge failed", Failure())
    record = json.loads(out.getvalue())
    assert record["level"] == "critical" and record["message"] == "the purge failed"
    assert "ValueError: boom" in record["traceback"]


def test_peer_fields_are_blanked_before_rendering() -> None:
    out, log = logged()
    log.info("connection from {peer}", peer="tcp4:192.0.2.7:5555")
    assert "192.0.2.7" not in out.getvalue()
    assert json.loads(out.getvalue())["message"] == "connection from [redacted]"


def test_log_level_filters_and_debug_is_for_hearth_only() -> None:
    out, log = logged(level="warn")
    log.info("quiet")
    log.error("loud")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["loud"]
    out = io.StringIO()
    publisher = LogPublisher(observer(out, "json", "debug"))
    Logger(namespace="hearth.node", observer=publisher).debug("ours")
    Logger(namespace="autobahn.websocket", observer=publisher).debug("theirs, naming peers")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["ours"]
    assert tuple(level.name for level in LogLevel.iterconstants()) == LEVELS


def test_json_line_survives_odd_events() -> None:
    record = json.loads(json_line({"log_format": "{x}", "x": float("nan"),
                                   "log_namespace": "legacy", "message": ("a",)}))
    assert record["fields"] == {} and record["level"] == "info"


def test_a_reason_is_a_field_too() -> None:
    record = json.loads(json_line({"log_format": "redis call failed ({why})",
                                   "why": "ConnectionError", "log_namespace": "hearth.redis",
                                   "log_level": LogLevel.warn}))
    assert record["fields"] == {"why": "ConnectionError"}
    assert record["message"] == "redis call failed (ConnectionError)"
