"""Several nodes sharing rooms through one broker: in this process, or `hearth serve`
subprocesses (which a test can kill)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from twisted.internet import reactor

from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE, make_config
from tests.support.live import LiveServer, until
from tests.support.serving import ServedHearth


def node_configs(n: int, **sections: Any) -> list[Any]:
    """n configs with their own data directories and the same secrets (as operators must)."""
    import dataclasses
    configs = []
    for _ in range(n):
        config = make_config(movement={"walk_speed": 50.0}, voice={"hearing_range": 20.0},
                             **sections)
        configs.append(dataclasses.replace(config, rooms=tuple(
            dataclasses.replace(r, capacity=12) for r in config.rooms)))
    from hearth.web.datadir import load_secrets
    first = Path(configs[0].server.data_dir)
    load_secrets(first)
    for config in configs[1:]:
        shutil.copy(first / "secrets.json", Path(config.server.data_dir) / "secrets.json")
    return configs


def brokers_for(kind: str, request: Any, n: int) -> list[Any]:
    """Brokers for n nodes in this process: one shared MemoryBroker (`memory`), or a
    RedisBroker each on the test's `redis` server or `cluster` (their fixtures)."""
    if kind == "memory":
        from hearth.spaces.broker import MemoryBroker
        shared = MemoryBroker(reactor.seconds, schedule=lambda c: reactor.callLater(0, c))
        return [shared] * n
    from hearth.web.redis_broker import RedisBroker
    url = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster").url
    return [RedisBroker(url) for _ in range(n)]


async def start_nodes(configs: list[Any], brokers: list[Any], first: int = 1,
                      webtransport: bool | None = None) -> list[LiveServer]:
    """Nodes named node<first>, node<first + 1>, … (`webtransport`: voice over UDP on each)."""
    from hearth.web.service import make_hearth
    nodes = []
    for i, (config, broker) in enumerate(zip(configs, brokers, strict=True)):
        hearth = make_hearth(config, reactor, ["tcp:0:interface=127.0.0.1"], broker=broker,
                             node_id=f"node{first + i}", webtransport=webtransport)
        hearth.service.startService()
        await hearth.when_listening()
        nodes.append(LiveServer(hearth, hearth.listeners[0].port.getHost().port))
    await until(lambda: all(getattr(b, "connected", True) for b in brokers), what="brokers")
    return nodes


def serve_nodes(tmp_path: Path, redis_url: str, nodes: list[ServedHearth], n: int = 2,
                **sections: Any) -> list[Path]:
    """`hearth serve` subprocesses on one Redis, with the same secrets; their configs."""
    from hearth.web.datadir import load_secrets
    configs = []
    for i in range(n):
        data = tmp_path / f"data{i}"
        if i == 0:
            load_secrets(data)
        else:
            data.mkdir()
            shutil.copy(tmp_path / "data0" / "secrets.json", data / "secrets.json")
        config = tmp_path / f"node{i}.toml"
        config.write_text(toml_of({**BASE, **sections,
                                   "server": {**BASE["server"], "data_dir": str(data)}}))
        node = ServedHearth("--config", str(config), "--redis", redis_url, "--node-id", f"node{i}")
        nodes.append(node)
        node.wait_ready()
        configs.append(config)
    return configs
