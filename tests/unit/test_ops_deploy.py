"""deploy/ and the Dockerfile, checked without a container engine or systemd running.

No container engine runs in CI, so the image and the compose file are checked statically:
what they say and what Hearth's own config and endpoints need must agree. The systemd unit
goes through `systemd-analyze verify` and its offline security review; the Prometheus rules
through `promtool check rules` and `promtool test rules` (tests/run.sh unpacks promtool
from Debian's prometheus package).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from hearth.spaces.config import load_config
from tests.support.binaries import need_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMTOOL = ROOT / "build" / "promtool" / "usr" / "bin" / "promtool"


# --- the image -------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def test_the_image_is_slim_debian_python_3_11_non_root_with_a_volume_and_healthcheck() -> None:
    steps = instructions(ROOT / "Dockerfile")
    assert [args.split()[0] for word, args in steps if word == "FROM"] == \
        ["python:3.11-slim-bookworm"] * 2
    final = dict(final_stage(steps))
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert final["VOLUME"] == '["/var/lib/hearth"]'
    assert "/livez" in final["HEALTHCHECK"] and "--interval" in final["HEALTHCHECK"]
    assert final["ENTRYPOINT"] == '["hearth"]' and "serve" in final["CMD"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    copied = set()
    for word, args in steps:  # everything copied from the context exists
        if word == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source)
    # ...and every folder the package is built from is copied
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"].values()
    assert set(package_dirs) <= copied, set(package_dirs) - copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_image_config_matches_the_volume_port_and_compose_network() -> None:
    steps = dict(final_stage(instructions(ROOT / "Dockerfile")))
    config = load_config(DEPLOY / "container" / "hearth.toml")
    assert config.server.data_dir == "/var/lib/hearth"  # the VOLUME
    [listen] = config.server.listen
    assert listen == f"tcp:{steps['EXPOSE']}:interface=0.0.0.0"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    # The nodes trust the network the proxy reaches them on, and nothing else is on it.
    assert services["proxy"]["networks"] == ["edge"]
    [subnet] = compose["networks"]["edge"]["ipam"]["config"]
    assert config.server.trusted_proxies == (subnet["subnet"],)
    on_edge = {name for name, s in services.items() if "edge" in s.get("networks", [])}
    assert on_edge == {"proxy", "hearth-1", "hearth-2"}
    assert compose["networks"]["backend"]["internal"] is True
    assert "edge" not in services["redis"]["networks"]
    assert ipaddress.ip_network(subnet["subnet"]).is_private
    assert urlsplit(config.server.redis).hostname == "redis" and "redis" in services


# --- compose and the proxy -------------------------------------------------------------


def test_compose_runs_redis_with_aof_two_nodes_and_a_forwarding_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "/data" in " ".join(redis["volumes"])  # AOF on a volume
    nodes = {name: s for name, s in services.items() if "hearth serve" in " ".join(
        s.get("entrypoint", []))}
    assert len(nodes) == 2
    ids, volumes = set(), set()
    for name, node in nodes.items():
        assert node["build"]["context"] == ".." and (DEPLOY / node["build"]["context"] /
                                                     node["build"]["dockerfile"]).exists()
        ids.add(node["environment"]["HEARTH_NODE_ID"])
        data = [v for v in node["volumes"] if v.endswith(":/var/lib/hearth")]
        assert len(data) == 1, name
        volumes.add(data[0])
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert node["depends_on"]["secrets"]["condition"] == "service_completed_successfully"
        assert "/var/lib/hearth-secrets/secrets.json" in node["entrypoint"][-1]  # same secrets
    assert len(ids) == 2 and len(volumes) == 2  # own node id, own data directory
    assert "load_secrets" in " ".join(services["secrets"]["entrypoint"])
    proxy = services["proxy"]
    assert proxy["ports"] == ["8080:80"]
    assert all(not s.get("ports") for name, s in services.items() if name != "proxy")
    [conf_mount] = proxy["volumes"]
    conf = (DEPLOY / conf_mount.split(":")[0]).read_text()
    upstream = re.search(r"upstream hearth \{(.*?)\}", conf, re.S)
    assert upstream is not None
    assert sorted(re.findall(r"server ([\w-]+):8080", upstream.group(1))) == sorted(nodes)
    for header in ("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                   "proxy_set_header X-Forwarded-Proto $scheme;",
                   "proxy_set_header Upgrade $http_upgrade;", "access_log off;",
                   # the port stays in Host: Hearth checks the WebSocket's Origin against it
                   "proxy_set_header Host $http_host;",
                   "proxy_connect_timeout 2s;",  # a stopped node: the other one at once
                   "location = /metrics { return 404; }"):
        assert header in conf, header
    for name in compose["volumes"]:
        assert any(name in " ".join(s.get("volumes", [])) for s in services.values()), name


# --- systemd -----------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value set (systemd allows a key more than once)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_the_unit_is_notify_with_a_watchdog_and_hardened() -> None:
    s = unit_settings(DEPLOY / "systemd" / "hearth.service")
    one = {k: v[-1] for k, v in s.items()}
    assert one["Service.Type"] == "notify" and one["Service.NotifyAccess"] == "main"
    assert int(one["Service.WatchdogSec"]) > 0
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Service.User"] == "hearth" and one["Service.NoNewPrivileges"] == "true"
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.ReadWritePaths"] == "/var/lib/hearth" == "/var/lib/" + one[
        "Service.StateDirectory"]
    environment = dict(e.split("=", 1) for e in s["Service.Environment"])
    assert environment["HEARTH_CONFIG"] == "/etc/hearth/hearth.toml"
    assert one["Service.ExecStart"].endswith("hearth serve --log-format json")
    for setting in ("ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID",
                    "ProtectKernelTunables", "ProtectControlGroups", "LockPersonality"):
        assert one[f"Service.{setting}"] == "true", setting


def test_systemd_analyze_verifies_the_unit_and_rates_it_well(tmp_path: Path) -> None:
    analyze = need_binary("systemd-analyze", "systemd-analyze (package systemd)")
    root = tmp_path / "root"  # the unit's commands exist there; nothing else is needed
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(DEPLOY / "systemd" / "hearth.service", root / "etc" / "systemd" / "system")
    (root / "opt" / "hearth" / "bin").mkdir(parents=True)
    (root / "opt" / "hearth" / "bin" / "hearth").write_text("#!/bin/sh\n")
    (root / "opt" / "hearth" / "bin" / "hearth").chmod(0o755)
    (root / "usr" / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("kill") or "/usr/bin/kill", root / "usr" / "bin" / "kill")
    (root / "bin").symlink_to("usr/bin")
    verify = subprocess.run([analyze, "verify", "--man=no", "--recursive-errors=no",
                             f"--root={root}", "hearth.service"],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stdout + verify.stderr, verify.stderr
    security = subprocess.run([analyze, "security", "--offline=true", "--threshold=20",
                               f"--root={root}", "hearth.service"],
                              capture_output=True, text=True, timeout=60)
    assert security.returncode == 0, security.stdout[-600:]  # exposure 2.0 or better ("OK")
    assert "Overall exposure level for hearth.service" in security.stdout


# --- Prometheus ----------------------------------------------------------------------------


def test_promtool_checks_and_tests_the_alert_rules() -> None:
    promtool = need_binary(str(PROMTOOL), "promtool (tests/run.sh unpacks Debian's prometheus)")
    for command in (["check", "rules", "hearth-alerts.yml"],
                    ["test", "rules", "hearth-alerts.test.yml"]):
        done = subprocess.run([promtool, *command], cwd=DEPLOY / "prometheus",
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_names_every_command_and_action() -> None:
    """Each `hearth` command and action in the CLI has a line of the README (issue 22)."""
    import argparse

    from hearth.web.cli import parser

    def commands(p: argparse.ArgumentParser, prefix: str) -> list[str]:
        found: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(f"{prefix} {name}")
                    found += commands(sub, f"{prefix} {name}")
        return found

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    named: set[str] = set()  # "hearth facilitator add|list NAME" names both actions
    for command, actions in re.findall(r"hearth ([a-z][a-z-]*)(?: ([a-z][a-z|-]*))?", readme):
        named.add(f"hearth {command}")
        named.update(f"hearth {command} {a}" for a in actions.split("|") if a)
    missing = [c for c in commands(parser(), "hearth") if c not in named]
    assert missing == []
