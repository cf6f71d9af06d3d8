"""docs/scaling.md's ACL for Hearth's Redis user is enough for everything a node does:
a redis-server where the default user may only PING and `hearth` has exactly that ACL."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from hearth.spaces.broker import Unreachable
from hearth.web.redis_broker import RedisBroker
from tests.support.redis_servers import RedisServer

ACL = ["--user", "default", "on", "nopass", "-@all", "+ping",
       "--user", "hearth", "on", ">s3cret", "~hearth:*", "&hearth:*", "+@all", "-@dangerous"]


@pytest_twisted.ensureDeferred
async def test_the_documented_acl_allows_every_broker_operation(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", None, *ACL).start()
    broker = RedisBroker(f"redis://hearth:s3cret@127.0.0.1:{redis.port}/0")
    outsider = RedisBroker(f"redis://127.0.0.1:{redis.port}/0")  # the default user
    try:
        await broker.start()
        await outsider.start()
        got: list[bytes] = []
        broker.subscribe_node("n1", got.append)
        broker.subscribe_all(got.append)
        await broker.heartbeat("n1", 4)
        assert await broker.alive("n1")
        assert await broker.claim_room("r", "n1", 5) == "n1"
        assert await broker.renew_room("r", "n1", 5)
        await broker.save_room("r", b"{}")
        assert await broker.load_room("r") == b"{}"
        sid = await broker.append("audit", b"x")
        assert sid is not None and await broker.read("audit") == [(sid, b"x")]
        assert await broker.remove("audit", [sid])
        await broker.append("audit", b"y")
        assert await broker.trim("audit", 2 ** 62) == 1
        assert await broker.lease("job", "n1", 5)
        await broker.release_lease("job", "n1")
        assert await broker.lease("job", "n2", 5)
        await broker.release_room("r", "n1")
        assert await broker.owner("r") is None
        await task.deferLater(reactor, 0.5, lambda: None)  # subscribed
        broker.send_node("n1", b"to n1")
        broker.send_all(b"to all")
        deadline = reactor.seconds() + 5
        while len(got) < 2 and reactor.seconds() < deadline:
            await task.deferLater(reactor, 0.05, lambda: None)
        assert got == [b"to n1", b"to all"] and broker.dropped == 0
        # and without the credentials nothing is read or written
        with pytest.raises(Unreachable, match="NoPermissionError"):
            await outsider.load_room("r")
        assert await outsider.append("audit", b"z") is None
        assert await broker.read("audit") == []
    finally:
        await broker.stop()
        await outsider.stop()
        redis.kill()
