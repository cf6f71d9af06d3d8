"""The `hearth` command: serve, check-config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_LISTEN_HELP = "a Twisted endpoint string, e.g. tcp:8080:interface=127.0.0.1 (repeatable)"


def install_reactor() -> Any:
    """Twisted's asyncio reactor, so redis-py's asyncio client can share the loop."""
    import asyncio

    from twisted.internet import asyncioreactor
    if "twisted.internet.reactor" not in sys.modules:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: anonymous, avatar-based peer-support groups with end-to-end "
                    "encrypted chat, served from your own machine.")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the server (no arguments: the shipped config on localhost)",
        description="Run Hearth. With no arguments: config/hearth.toml, the in-memory broker, "
                    "http://127.0.0.1:8080/.")
    serve.add_argument("--config", type=Path, metavar="PATH",
                       help="config file (default: the shipped config/hearth.toml)")
    serve.add_argument("--listen", action="append", metavar="ENDPOINT", help=DEFAULT_LISTEN_HELP)
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="log lines for people (text) or for collectors (json)")
    check = commands.add_parser("check-config", help="check a config file and list every problem",
                                description="Exit 0 if the config is good; otherwise list each "
                                            "problem with its file and key, and exit 2.")
    check.add_argument("path", type=Path, metavar="PATH")
    audit = commands.add_parser("audit", help="the audit log of moderation actions",
                                description="Read the audit log in the config's data directory.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    export = audit_commands.add_parser("export", help="print every entry (tab-separated, or JSON)")
    export.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: the shipped config/hearth.toml)")
    export.add_argument("--json", action="store_true", help="one JSON object per line")
    return top


def check_endpoints(source: str, endpoints: list[str], key: str) -> list[str]:
    from twisted.internet.endpoints import serverFromString
    problems = []
    for i, description in enumerate(endpoints):
        try:
            serverFromString(_reactor_for_parsing(), description)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"{source}: {key}[{i}]: expected a Twisted endpoint string like "
                            f"'tcp:8080:interface=127.0.0.1', got {description!r} ({exc})")
    return problems


def _reactor_for_parsing() -> Any:
    from twisted.internet.testing import MemoryReactor
    return MemoryReactor()


def load(path: Path | None, listen: list[str] | None) -> Any:
    from spaces.config import ConfigError, load_config
    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return None
    problems = check_endpoints(config.source, list(config.server.listen), "server.listen")
    if listen:
        problems += check_endpoints("--listen", listen, "--listen")
    for problem in problems:
        print(problem, file=sys.stderr)
    return None if problems else config


def serve(args: argparse.Namespace) -> int:
    reactor = install_reactor()
    config = load(args.config, args.listen)
    if config is None:
        return 2
    from twisted.logger import globalLogBeginner

    from web.logs import observer
    from web.service import make_hearth
    globalLogBeginner.beginLoggingTo([observer(sys.stdout, args.log_format)],
                                     redirectStandardIO=False)
    hearth = make_hearth(config, reactor, args.listen)
    hearth.service.startService()
    status = {"code": 0}

    def ready(_: Any) -> None:
        urls = [_url(lst.port) for lst in hearth.listeners]
        rooms = ", ".join(r.id for r in config.rooms)
        print(f"\nHearth is running.\n  Open {urls[0]} in a browser.\n"
              f"  Config: {config.source} (rooms: {rooms})\n"
              "  Broker: in memory (one process; add Redis to share rooms between nodes).\n"
              "  Press Ctrl+C to stop.\n", flush=True)

    def failed(failure: Any) -> None:
        print(f"hearth: cannot listen: {failure.value}", file=sys.stderr)
        status["code"] = 1
        reactor.stop()

    hearth.when_listening().addCallbacks(ready, failed)
    reactor.addSystemEventTrigger("before", "shutdown", hearth.service.stopService)
    reactor.run()
    return status["code"]


def _url(port: Any) -> str:
    host = port.getHost()
    scheme = "https" if "TLS" in type(port).__name__ or hasattr(port, "getTLS") else "http"
    address = host.host if ":" not in host.host else f"[{host.host}]"
    if address in ("0.0.0.0", "::", "[::]"):
        address = "127.0.0.1"
    return f"{scheme}://{address}:{host.port}/"


def audit_export(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from moderation.audit import format_entry, read_entries
    config = load(args.config, None)
    if config is None:
        return 2
    path = Path(config.server.data_dir) / "audit.jsonl"
    for entry in read_entries(path):
        print(json.dumps(asdict(entry), ensure_ascii=False) if args.json else format_entry(entry))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "audit":
        return audit_export(args)
    if args.command == "check-config":
        config = load(args.path, None)
        if config is None:
            return 2
        print(f"{config.source}: OK ({len(config.rooms)} rooms)")
        return 0
    parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
