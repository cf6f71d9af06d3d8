"""Faults across nodes: a node killed with SIGKILL, and Redis stopped and restarted."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest_twisted

from hearth.client.websocket import ClientClosed, HearthClient, resume_anywhere
from hearth.spaces.config import to_toml as toml_of
from tests.support.config import BASE
from tests.support.crisis import SECRET, asks_for_help, crisis, quick_crisis
from tests.support.live import sleep, until
from tests.support.nodes import node_configs, serve_nodes, start_nodes
from tests.support.redis_servers import RedisServer
from tests.support.serving import ServedHearth
from tests.support.webhook_receiver import Receiver


def hearth_command(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hearth.web.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest_twisted.ensureDeferred
async def test_a_killed_node_s_pending_alert_is_delivered_by_another(tmp_path: Path) -> None:
    """The on-call receiver is down when node0 raises an alert; node0 is killed; the
    receiver comes back: node1 adopts node0's alert from Redis and delivers it."""
    redis = RedisServer(tmp_path / "redis").start()
    receiver = Receiver(SECRET, fail_first=10**9)
    hook = receiver.listen()
    nodes: list[ServedHearth] = []
    try:
        configs = serve_nodes(tmp_path, redis.url, nodes, crisis=crisis(hook))
        person, incident = await asks_for_help(f"ws://127.0.0.1:{nodes[0].port}/ws")  # node0 runs the room
        await until(lambda: receiver.refused >= 2, what="node0 trying the receiver")
        nodes[0].proc.kill()
        killed_at = time.monotonic()
        receiver.fail_first = 0  # the receiver is back; node0 is not
        await until(lambda: any(c.body.get("incident") == incident for c in receiver.calls),
                    timeout=30, what="the alert, from node1")
        took = time.monotonic() - killed_at
        call = next(c for c in receiver.calls if c.body.get("incident") == incident)
        assert receiver.verify(call) and call.headers["idempotency-key"]
        assert call.body["event"] == "incident.alert" and "Quiet Otter" not in call.raw.decode()
        assert took < 20, f"the alert took {took:.1f} s after the kill"
        assert "raised on node node0" in nodes[1].output()
        # and the shared incident log says what happened, from any machine with the config
        exported = hearth_command("incidents", "export", "--config", str(configs[1]),
                                  "--redis", redis.url)
        assert incident in exported and "Quiet Otter" in exported  # the pseudonym, no more
        local = hearth_command("incidents", "export", "--config", str(configs[1]), "--local")
        assert incident not in local  # node1's own journal never had it
        person.drop()
    finally:
        for node in nodes:
            node.stop()
        await receiver.stop()
        redis.kill()


# the help button's second tier: the on-call webhook again, 8 s after the press
WEBHOOK_AT_8 = 'after = 8\nif_not = "acknowledged"\nnotify = ["on_call_webhook"]'


def tier_calls(receiver: Receiver, incident: str, tier: int) -> list[Any]:
    return [c for c in receiver.calls if c.body.get("incident") == incident
            and c.body.get("event") == "incident.alert" and c.body.get("tier") == tier]


@pytest_twisted.ensureDeferred
async def test_open_incidents_run_on_after_a_crash_of_a_single_node(tmp_path: Path) -> None:
    """One process, killed with SIGKILL after a help press: restarted on its data directory,
    it runs the incident on from its incident log — the later tier fires, the first does
    not fire again."""
    receiver = Receiver(SECRET)
    hook = receiver.listen()
    data = tmp_path / "data"
    config = tmp_path / "hearth.toml"
    config.write_text(toml_of({**BASE, "server": {**BASE["server"], "data_dir": str(data)},
                               "crisis": {**crisis(hook),
                                          "directory": quick_crisis(tmp_path, WEBHOOK_AT_8)}}))
    node = ServedHearth("--config", str(config))
    again = None
    try:
        node.wait_ready()
        person, incident = await asks_for_help(f"ws://127.0.0.1:{node.port}/ws")
        await until(lambda: tier_calls(receiver, incident, 0), what="the first tier")
        node.proc.kill()
        node.stop()
        person.drop()
        again = ServedHearth("--config", str(config))
        again.wait_ready()
        await until(lambda: tier_calls(receiver, incident, 1), timeout=20,
                    what="the second tier, from the restarted node")
        assert len(tier_calls(receiver, incident, 0)) == 1
        assert "open incidents run again after a restart" in again.output()
    finally:
        node.stop()
        if again is not None:
            again.stop()
        await receiver.stop()


@pytest_twisted.ensureDeferred
async def test_a_dead_node_s_open_incident_is_run_on_by_another_even_in_an_empty_room(
        tmp_path: Path) -> None:
    """Nobody comes back to the room of a node that died with an open incident: another
    node takes the room over anyway, and the incident's next tier fires there."""
    redis = RedisServer(tmp_path / "redis").start()
    receiver = Receiver(SECRET)
    hook = receiver.listen()
    nodes: list[ServedHearth] = []
    try:
        serve_nodes(tmp_path, redis.url, nodes, crisis={
            **crisis(hook), "directory": quick_crisis(tmp_path, WEBHOOK_AT_8)})
        person, incident = await asks_for_help(f"ws://127.0.0.1:{nodes[0].port}/ws")  # node0 runs the room
        await until(lambda: tier_calls(receiver, incident, 0), what="the first tier")
        await sleep(1.5)  # the room's state (with the incident) is saved once a second
        nodes[0].proc.kill()
        person.drop()
        await until(lambda: tier_calls(receiver, incident, 1), timeout=25,
                    what="the second tier, from node1")
        assert "to run its open incidents" in nodes[1].output()
        assert len(tier_calls(receiver, incident, 0)) == 1
    finally:
        for node in nodes:
            node.stop()
        await receiver.stop()
        redis.kill()


@pytest_twisted.ensureDeferred
async def test_a_killed_node_s_members_resume_on_another_within_10_s(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    nodes: list[ServedHearth] = []
    try:
        serve_nodes(tmp_path, redis.url, nodes)
        urls = [f"ws://127.0.0.1:{n.port}/ws" for n in nodes]
        # the room is owned by node0 (first join); two members there, two on node1
        members = []
        for i, url in enumerate([urls[0], urls[0], urls[1], urls[1]]):
            client = await HearthClient.connect(url)
            welcome = await client.join("circle", pseudonym=f"Steady Member {i}")
            members.append((client, welcome))
        await sleep(1.5)  # the owner saves the room's state once a second
        nodes[0].proc.kill()
        killed_at = time.monotonic()
        deadline = killed_at + 10
        resumed = []
        for client, welcome in members:
            if client.close_code is None:  # wait for the dead node's socket to be noticed
                with contextlib.suppress(ClientClosed, TimeoutError):
                    await client.next(lambda m: False,
                                      timeout=max(0.1, deadline - time.monotonic()))
            again, back = await resume_anywhere([urls[1]], welcome["token"],
                                                within=deadline - time.monotonic())
            resumed.append((again, back))
        took = time.monotonic() - killed_at
        assert took < 10, f"resuming took {took:.1f} s"
        for (_, welcome), (_, back) in zip(members, resumed, strict=True):
            assert back["member"] == welcome["member"] and back["resumed"]
            me = next(m for m in back["room"]["members"] if m["id"] == back["member"])
            assert me["pseudonym"] == next(
                m["pseudonym"] for m in welcome["room"]["members"] if m["id"] == welcome["member"])
        # and the room works again, on node1
        a, b = resumed[0][0], resumed[3][0]
        a.envelope("AAAA", "A" * 43 + "=")
        assert (await b.expect("envelope"))["from"] == a.member
        for client, _ in resumed:
            await client.close()
    finally:
        for node in nodes:
            node.stop()
        redis.kill()


@pytest_twisted.ensureDeferred
async def test_a_redis_restart_is_survived_and_an_alert_raised_meanwhile_is_delivered(
        tmp_path: Path) -> None:
    from hearth.web.redis_broker import RedisBroker
    redis = RedisServer(tmp_path / "redis").start()
    receiver = Receiver(SECRET)
    hook_port = receiver.listen()
    brokers = [RedisBroker(redis.url), RedisBroker(redis.url)]
    nodes = await start_nodes(node_configs(2, crisis=crisis(hook_port)), brokers)
    try:
        owner_side = await nodes[0].client()
        await owner_side.join("circle", pseudonym="Owner Side")
        other_side = await nodes[1].client()
        await other_side.join("circle", pseudonym="Other Side")
        person = await nodes[0].client()
        await person.join("circle", pseudonym="Quiet Otter")
        owner_side.envelope("QUFBQQ==", "A" * 43 + "=")
        await other_side.expect("envelope")

        redis.kill()  # Redis goes away mid-session
        await until(lambda: not any(b.connected for b in brokers), what="both nodes noticing")
        person.send({"type": "help"})  # a crisis during the outage
        await person.expect("help_received")
        owner_side.envelope("QkJCQg==", "A" * 43 + "=")  # the owner's members carry on
        await person.next(lambda m: m["type"] == "envelope" and m["body"] == "QkJCQg==")
        await sleep(1.0)

        redis.restart()  # back, empty (no persistence configured in this test)
        await until(lambda: all(b.connected for b in brokers), timeout=15, what="reconnection")
        await until(lambda: any(c.body.get("event") == "incident.alert" for c in receiver.calls),
                    timeout=20, what="the alert raised during the outage")

        async def crosses() -> bool:
            owner_side.envelope("Q0NDQw==", "A" * 43 + "=")
            try:
                got = await other_side.next(lambda m: m["type"] == "envelope"
                                            and m["body"] == "Q0NDQw==", timeout=1)
                return bool(got)
            except TimeoutError:
                return False
        deadline = time.monotonic() + 15
        while not await crosses():  # the room recovers across nodes
            assert time.monotonic() < deadline, "the room did not recover across nodes"
        for client in (owner_side, other_side, person):
            client.drop()
    finally:
        for node in nodes:
            await node.hearth.service.stopService()
        await receiver.stop()
        redis.kill()





@pytest_twisted.ensureDeferred
async def test_a_sign_out_during_a_redis_outage_reaches_the_other_node_afterwards(
        tmp_path: Path) -> None:
    from hearth.web.redis_broker import RedisBroker
    from tests.support.live import until_async
    from tests.support.signin import PASSWORD, add_account, browser, console_csrf, csrf_in
    redis = RedisServer(tmp_path / "redis").start()
    brokers = [RedisBroker(redis.url), RedisBroker(redis.url)]
    nodes = await start_nodes(node_configs(2), brokers)
    try:
        for node in nodes:
            add_account(node)
        b = browser(nodes[0])
        page = await b.request("GET", "/login")
        assert (await b.request("POST", "/login", {"name": "ana", "password": PASSWORD,
                                                   "code": "", "csrf": csrf_in(page.body)})).code == 303
        cookies = dict(b.cookies)

        async def console_code() -> int:
            other = browser(nodes[1])
            other.cookies = dict(cookies)  # a browser that kept the cookie
            return int((await other.request("GET", "/console")).code)

        async def signed_in() -> bool:
            return await console_code() == 200
        await until_async(signed_in, what="signed in on node1")
        redis.kill()
        await until(lambda: not any(b.connected for b in brokers), what="both nodes noticing")
        console = await b.request("GET", "/console")
        assert (await b.request("POST", "/logout", {"csrf": console_csrf(console.body)})).code == 303
        # Nothing can carry the sign-out while Redis is away: a second is given to anything
        # that would (there is no event to wait for that proves a message did not travel).
        await sleep(1.0)
        assert await console_code() == 200  # node1 cannot know yet
        redis.restart()

        async def signed_out() -> bool:
            return await console_code() == 303
        await until_async(signed_out, timeout=20, what="the sign-out, after Redis came back")
    finally:
        for node in nodes:
            await node.hearth.service.stopService()
        redis.kill()
