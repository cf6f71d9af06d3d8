"""The `hearth` command: serve, check-config, init, privacy, audit, incidents, drill, facilitator.

Every command that reads a config takes `--config PATH`; without it, the config is
$HEARTH_CONFIG if set, else /etc/hearth/hearth.toml if it exists, else the shipped
config (the embedded demo).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hearth.spaces.wording import counted
from hearth.web.logs import LEVELS as LOG_LEVELS

DEFAULT_LISTEN_HELP = "a Twisted endpoint string, e.g. tcp:8080:interface=127.0.0.1 (repeatable)"
ETC_CONFIG = Path("/etc/hearth/hearth.toml")
CONFIG_HELP = ("config file (default: $HEARTH_CONFIG, else /etc/hearth/hearth.toml if it "
               "exists, else the shipped demo config)")


def default_config(environ: Mapping[str, str] | None = None,
                   etc: Path = ETC_CONFIG) -> Path | None:
    """The config a command reads without --config: $HEARTH_CONFIG, else `etc` if it exists;
    None means the shipped config."""
    env = os.environ if environ is None else environ
    if env.get("HEARTH_CONFIG"):
        return Path(env["HEARTH_CONFIG"])
    return etc if etc.is_file() else None


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("hearth")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def install_reactor() -> Any:
    """Twisted's asyncio reactor, so redis-py's asyncio client can share the loop; on
    uvloop's event loop (libuv), which runs the relay with 2-7 % fewer instructions per
    delivery than asyncio's own loop (docs/performance.md, "Options measured")."""
    import asyncio

    import uvloop
    from twisted.internet import asyncioreactor
    if "twisted.internet.reactor" not in sys.modules:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor
    return reactor


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="hearth",
        description="Hearth: anonymous, avatar-based peer-support groups with end-to-end "
                    "encrypted chat, served from your own machine.")
    top.add_argument("--version", action="version", version=f"hearth {version()}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the server (no arguments: the shipped config on localhost)",
        description="Run Hearth. With no arguments: $HEARTH_CONFIG, /etc/hearth/hearth.toml or "
                    "the shipped demo config; the in-memory broker, http://127.0.0.1:8080/. "
                    "SIGTERM stops it gracefully; SIGHUP reloads the TLS certificates and the "
                    "crisis data (helplines, rule packs). Under systemd (Type=notify) it "
                    "reports readiness and pings the watchdog.")
    serve.add_argument("--config", type=Path, metavar="PATH",
                       help=CONFIG_HELP)
    serve.add_argument("--listen", action="append", metavar="ENDPOINT", help=DEFAULT_LISTEN_HELP)
    serve.add_argument("--redis", metavar="URL",
                       help="share rooms with other nodes through Redis "
                            "(redis://host:6379/0, or redis+cluster://host:7000)")
    serve.add_argument("--node-id", metavar="ID",
                       help="this node's name among the nodes (default: random)")
    serve.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="log lines for people (text) or one JSON object per line for "
                            "collectors (json: time, level, namespace, message, fields)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                       help="the least severe events written (default info; debug applies to "
                            "Hearth's own events only)")
    serve.add_argument("--webtransport", type=int, metavar="UDP_PORT",
                       help="also carry voice over WebTransport (UDP) on this port; without "
                            "[webtransport] certificate, with a short-lived self-signed "
                            "certificate that browsers accept by its hash")
    check = commands.add_parser("check-config", help="check a config file and list every problem",
                                description="Exit 0 if the config is good; otherwise list each "
                                            "problem with its file and key, and exit 2.")
    check.add_argument("path", type=Path, metavar="PATH", nargs="?",
                       help="the config file (default: as --config elsewhere: $HEARTH_CONFIG, "
                            "/etc/hearth/hearth.toml, or the shipped one)")
    drill = commands.add_parser(
        "drill", help="run a test incident through the whole alert chain",
        description="Runs a labelled TEST incident through consoles, on-duty facilitators, "
                    "on-call webhooks and e-mail, printing each hop's time. Exit 0 only if "
                    "every hop answered.")
    drill.add_argument("--config", type=Path, metavar="PATH",
                       help=CONFIG_HELP)
    incidents = commands.add_parser("incidents", help="crisis incidents (metadata only)")
    incident_commands = incidents.add_subparsers(dest="incidents_command", metavar="ACTION",
                                                 required=True)
    inc_export = incident_commands.add_parser(
        "export", help="print every incident's last state as JSON lines (no content, ever)")
    inc_export.add_argument("--config", type=Path, metavar="PATH",
                            help=CONFIG_HELP)
    _shared_log_arguments(inc_export)
    audit = commands.add_parser("audit", help="the audit log of moderation actions",
                                description="Read the audit log in the config's data directory.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    export = audit_commands.add_parser("export", help="print every entry (tab-separated, or JSON)")
    export.add_argument("--config", type=Path, metavar="PATH",
                        help=CONFIG_HELP)
    export.add_argument("--json", action="store_true", help="one JSON object per line")
    _shared_log_arguments(export)
    _facilitator_parser(commands)
    init = commands.add_parser(
        "init", help="make a new deployment directory: a commented config, a data directory",
        description="Write DIR/hearth.toml (the shipped config with data_dir = \"data\" or "
                    "--data-dir, public_url, and its "
                    "own copy of the crisis data in DIR/crisis), and DIR/data (mode 0700) with "
                    "fresh secrets (secrets.json, mode 0600). Refuses to overwrite a config.")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--data-dir", type=Path, metavar="PATH",
                      help="the data directory (default: DIR/data, written as the relative "
                           "\"data\"); e.g. /var/lib/hearth for the systemd unit")
    init.add_argument("--public-url", metavar="URL",
                      help="the address people use to reach this Hearth, e.g. "
                           "https://groups.example.org (the links in alerts); asked for when "
                           "a terminal is attached")
    init.add_argument("--shared-crisis", action="store_true",
                      help="point crisis.directory at the shipped config/crisis instead of "
                           "copying it into DIR/crisis (helplines update with Hearth)")
    privacy = commands.add_parser("privacy", help="what Hearth keeps about people",
                                  description="Report what is stored, how much and until when.")
    privacy_commands = privacy.add_subparsers(dest="privacy_command", metavar="ACTION",
                                              required=True)
    report = privacy_commands.add_parser(
        "report", help="what is stored on disk, how much, and until when (never content)")
    report.add_argument("--config", type=Path, metavar="PATH",
                        help=CONFIG_HELP)
    report.add_argument("--json", action="store_true", help="one JSON document")
    _shared_log_arguments(report, "also report what is in this Redis (default: the config's "
                                  "server.redis, if set)", "report this node's data directory only")
    return top


def _facilitator_parser(commands: Any) -> None:
    accounts = commands.add_parser(
        "facilitator", help="facilitator and operator accounts (sign-in at /login)",
        description="Add, list, remove facilitator accounts, set a new password, or turn on a "
                    "second factor (TOTP). Accounts are kept in the config's data directory "
                    "(facilitators.json); a running server sees changes at once.")
    actions = accounts.add_subparsers(dest="facilitator_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH",
                        help=CONFIG_HELP)
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument("--password-file", type=Path, metavar="PATH",
                          help="read the password from the first line of PATH ('-': standard "
                               "input) instead of asking for it")
    add = actions.add_parser("add", parents=[common, password], help="add an account",
                             description="Add an account. The password is asked for twice "
                                         "(at least 12 characters; a passphrase is easiest).")
    add.add_argument("name", metavar="NAME", help="lowercase letters, digits, '.', '_', '-'")
    add.add_argument("--operator", action="store_true",
                     help="an operator account (default: facilitator)")
    actions.add_parser("list", parents=[common], help="list the accounts")
    remove = actions.add_parser("remove", parents=[common],
                                help="remove an account (its sessions end)")
    remove.add_argument("name", metavar="NAME")
    reset = actions.add_parser("reset", parents=[common, password],
                               help="set a new password (the account's sessions end)")
    reset.add_argument("name", metavar="NAME")
    totp = actions.add_parser(
        "totp", parents=[common], help="turn on (or --disable) a TOTP second factor",
        description="Make a new TOTP secret for NAME and print it once, as an otpauth:// URI "
                    "and as text, to add to an authenticator app. From then on, signing in "
                    "needs the app's 6-digit code too. Running it again replaces the secret.")
    totp.add_argument("name", metavar="NAME")
    totp.add_argument("--disable", action="store_true", help="turn the second factor off")


def check_endpoints(source: str, endpoints: list[str], key: str) -> list[str]:
    from twisted.internet.endpoints import serverFromString
    problems = []
    for i, description in enumerate(endpoints):
        where = f"{source}: {key}[{i}]: "
        try:
            serverFromString(_reactor_for_parsing(), description)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"{where}expected a Twisted endpoint string like "
                            f"'tcp:8080:interface=127.0.0.1', got {description!r} ({exc})")
        except OSError as exc:  # an ssl: endpoint reads its key and certificate files here
            problems.append(f"{where}cannot read {exc.filename or 'a file it names'} "
                            f"({exc.strerror or exc}); an ssl: endpoint needs readable PEM "
                            "files in privateKey= and certKey=")
        except Exception as exc:  # OpenSSL's own errors (not PEM, no key …) too
            problems.append(f"{where}the TLS key or certificate in {description!r} cannot be "
                            f"used ({type(exc).__name__}: {exc}); expected PEM files with a "
                            "private key and its certificate")
    return problems


def _reactor_for_parsing() -> Any:
    from twisted.internet.testing import MemoryReactor
    return MemoryReactor()


def check_data_dir(source: str, data_dir: str) -> list[str]:
    """server.data_dir: a directory Hearth can make, read and write, and its secrets.json (if
    there is one yet) readable. Nothing is created here (check-config changes nothing)."""
    import os

    from hearth.web.datadir import DataDirError, load_secrets
    path, where = Path(data_dir), f"{source}: server.data_dir: "
    if path.exists() and not path.is_dir():
        return [f"{where}expected a directory, but {path} is not one"]
    if not path.exists():
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is None or not existing.is_dir() \
                or not os.access(existing, os.W_OK | os.X_OK):
            return [f"{where}cannot make {path}: {existing} is not a directory Hearth can "
                    "write in"]
        return []
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return [f"{where}expected a directory Hearth can read and write: {path}"]
    if not (path / "secrets.json").exists():
        return []
    try:
        load_secrets(path, create=False)
    except (OSError, DataDirError) as exc:
        return [f"{where}{getattr(exc, 'strerror', None) or exc}"]
    return []


def load(path: Path | None, listen: list[str] | None) -> Any:
    from hearth.spaces.config import ConfigError, load_config
    try:
        config = load_config(path if path is not None else default_config())
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return None
    problems = check_endpoints(config.source, list(config.server.listen), "server.listen")
    problems += check_data_dir(config.source, config.server.data_dir)
    from hearth.web.webtransport import check as check_webtransport
    problems += check_webtransport(config)
    from hearth.moderation.crisis_config import config_warnings, load_crisis
    try:
        # Models are checked even when [crisis] detector_model is off: a broken file is an error.
        crisis = load_crisis(Path(config.crisis.directory),
                             with_models=config.crisis.detector_model)
    except ConfigError as err:
        problems += err.problems
    else:
        for warning in config_warnings(config, crisis):
            print(warning, file=sys.stderr)
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
    if args.webtransport is not None:
        if not 1 <= args.webtransport <= 65535:
            print("--webtransport: expected a UDP port from 1 to 65535", file=sys.stderr)
            return 2
        import dataclasses
        wt = config.webtransport
        config = dataclasses.replace(config, webtransport=dataclasses.replace(
            wt, port=args.webtransport, self_signed=not wt.certificate))
    from twisted.logger import globalLogBeginner

    from hearth.web.logs import observer
    from hearth.web.service import listener_url, make_hearth
    from hearth.web.systemd import Notifier, WatchdogService
    globalLogBeginner.beginLoggingTo([observer(sys.stdout, args.log_format, args.log_level)],
                                     redirectStandardIO=False)
    redis_url = args.redis or config.server.redis
    broker = None
    if redis_url:
        from hearth.web.redis_broker import RedisBroker
        broker = RedisBroker(redis_url)
    from hearth.web.datadir import DataDirError, DataDirInUse, lock_data_dir
    try:
        # Held until the process exits: nothing else here reads or writes the directory first.
        lock_data_dir(Path(config.server.data_dir))
    except DataDirInUse as exc:
        print(f"hearth: cannot start: {exc}. Nothing in it was changed.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"hearth: cannot start: {config.source}: server.data_dir: "
              f"{exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        hearth = make_hearth(config, reactor, args.listen, broker=broker, node_id=args.node_id,
                             persist_rooms=True)
    except (OSError, DataDirError) as exc:  # the data directory, as check_data_dir saw it
        why = (f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename
               else str(exc))
        print(f"hearth: cannot start: {config.source}: server.data_dir: {why}", file=sys.stderr)
        return 2
    systemd = Notifier()
    WatchdogService(systemd, reactor).setServiceParent(hearth.service)
    hearth.service.startService()
    status = {"code": 0}
    serving = (f"Serving {counted(len(config.rooms), 'room')}; broker {hearth.node.broker.name}, "
               f"node {hearth.node.id}")

    def ready(_: Any) -> None:
        urls = [listener_url(lst.port) for lst in hearth.listeners]
        rooms = ", ".join(r.id for r in config.rooms)
        broker_line = (f"Redis ({hearth.node.broker.name}), node {hearth.node.id}" if redis_url
                       else "in memory (one process; add --redis to share rooms between nodes).")
        from hearth.web.webtransport import describe
        voice = hearth.webtransport.server.port if hearth.webtransport is not None else None
        voice_line = describe(config, voice) if voice else None
        print(f"\nHearth is running (version {version()}).\n  Open {urls[0]} in a browser.\n"
              + (f"  Voice: {voice_line}\n" if voice_line else "")
              +
              f"  Config: {config.source} (rooms: {rooms})\n"
              f"  Broker: {broker_line}\n"
              "  Press Ctrl+C to stop.\n", flush=True)
        systemd.ready(serving)

    def failed(failure: Any) -> None:
        print(f"hearth: cannot listen on {hearth.why_not_listening(failure)}", file=sys.stderr)
        status["code"] = 1
        reactor.callWhenRunning(reactor.stop)  # it may fail before the reactor runs

    def reload() -> None:
        """SIGHUP (systemctl reload): web/reload.py. Refused parts keep running as they were."""
        systemd.reloading()
        problems = hearth.reload()
        systemd.ready(serving if not problems else
                      f"{serving}; the last reload kept {len(problems)} parts as they were")

    hearth.when_listening().addCallbacks(ready, failed)
    reactor.addSystemEventTrigger("before", "shutdown", systemd.stopping)
    reactor.addSystemEventTrigger("before", "shutdown", hearth.service.stopService)
    on_signal(reactor, "SIGHUP", reload)
    reactor.run()
    systemd.close()
    return status["code"]


def on_signal(reactor: Any, name: str, action: Callable[[], None]) -> None:
    """Run `action` in the reactor when the process gets the signal `name`. A plain Python
    handler (as Twisted's own for SIGINT and SIGTERM): asyncio's add_signal_handler would
    depend on a wakeup fd that Twisted's reactor replaces."""
    import signal
    signal.signal(getattr(signal, name), lambda *_: reactor.callFromThread(action))


def drill(args: argparse.Namespace) -> int:
    reactor = install_reactor()
    config = load(args.config, None)
    if config is None:
        return 2
    from twisted.internet.defer import ensureDeferred

    from hearth.web.drill import run_drill
    status = {"code": 1}

    def finish(code: int) -> None:
        status["code"] = code

    def crashed(failure: Any) -> None:
        print(f"hearth drill: {failure.getErrorMessage()}", file=sys.stderr)

    d = ensureDeferred(run_drill(config, reactor, sys.stdout))
    d.addCallbacks(finish, crashed)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return status["code"]


def _shared_log_arguments(command: argparse.ArgumentParser,
                          redis_help: str = "read every node's records from this Redis "
                                            "(default: the config's server.redis, if set)",
                          local_help: str = "read only this node's own copy in the data "
                                            "directory") -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument("--redis", metavar="URL", help=redis_help)
    where.add_argument("--local", action="store_true", help=local_help)


def _records(args: argparse.Namespace, config: Any, stream: str,
             local: Path) -> list[dict[str, Any]] | None:
    """A log's records: every node's from the shared stream when Redis is configured
    (web/shared_logs.py), else this node's journal. None (after saying why) on failure."""
    from hearth.moderation.journal import read_records
    url = None if args.local else (args.redis or config.server.redis)
    if not url:
        return list(read_records(local))
    from hearth.web.shared_logs import read_stream

    async def read(broker: Any) -> list[dict[str, Any]]:
        return await read_stream(broker, stream)
    records: list[dict[str, Any]] | None = with_redis(
        url, read, f"the shared {stream} log", "--local reads this node's own copy")
    return records


def with_redis(url: str, work: Callable[[Any], Any], what: str, instead: str) -> Any:
    """Run `await work(broker)` against the Redis at `url` and return its result; None (after
    saying what could not be read, and what to do `instead`) if Redis did not answer."""
    reactor = install_reactor()
    from twisted.internet.defer import ensureDeferred

    from hearth.web.redis_broker import RedisBroker
    broker = RedisBroker(url)
    result: dict[str, Any] = {}

    async def run() -> None:
        await broker.start()
        try:
            result["value"] = await work(broker)
        finally:
            await broker.stop()

    def failed(failure: Any) -> None:
        print(f"hearth: cannot read {what} from Redis "
              f"({failure.getErrorMessage() or failure.type.__name__}); {instead}",
              file=sys.stderr)

    d = ensureDeferred(run())
    d.addErrback(failed)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return result.get("value")


def incidents_export(args: argparse.Namespace) -> int:
    import json

    config = load(args.config, None)
    if config is None:
        return 2
    records = _records(args, config, "incidents",
                       Path(config.server.data_dir) / "incidents.jsonl")
    if records is None:
        return 1
    from hearth.moderation.incidents import latest_incidents
    for incident in latest_incidents(records).values():
        print(json.dumps({k: v for k, v in incident.items() if k != "member"},
                         ensure_ascii=False))
    return 0


def audit_export(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from hearth.moderation.audit import AuditEntry, format_entry
    config = load(args.config, None)
    if config is None:
        return 2
    records = _records(args, config, "audit", Path(config.server.data_dir) / "audit.jsonl")
    if records is None:
        return 1
    fields = set(AuditEntry.__dataclass_fields__)
    for record in records:
        try:
            entry = AuditEntry(**{k: v for k, v in record.items() if k in fields})
        except TypeError:  # a torn or foreign record
            continue
        print(json.dumps(asdict(entry), ensure_ascii=False) if args.json else format_entry(entry))
    return 0


def _read_password(args: argparse.Namespace, name: str) -> str | None:
    """From --password-file (first line; '-' is standard input) or asked twice on the terminal."""
    import getpass
    if args.password_file is not None:
        try:
            text = (sys.stdin.read() if str(args.password_file) == "-"
                    else args.password_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"hearth facilitator: cannot read {args.password_file} "
                  f"({getattr(exc, 'strerror', None) or type(exc).__name__})", file=sys.stderr)
            return None
        return text.splitlines()[0] if text else ""
    if not sys.stdin.isatty():
        print("hearth facilitator: no terminal to ask for the password on: use "
              "--password-file PATH (or --password-file - for standard input)", file=sys.stderr)
        return None
    first = getpass.getpass(f"New password for {name}: ")
    if getpass.getpass("The same password again: ") != first:
        print("hearth facilitator: the two passwords differ; nothing was changed", file=sys.stderr)
        return None
    return first


def _audit_account_change(config: Any, action: str, name: str) -> None:
    """An account change made with `hearth facilitator` goes to the audit log: this node's
    journal and, with several nodes (server.redis), the shared audit log. The actor is
    the system user who ran the command; never a password or a TOTP secret."""
    import getpass
    import json
    import time

    from hearth.moderation.audit import AuditLog
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        user = "unknown"
    log = AuditLog(Path(config.server.data_dir) / "audit.jsonl")
    try:
        entry = log.record(f"cli:{user}", f"facilitator.{action}", name, None, "ok", time.time())
    finally:
        log.close()
    if not config.server.redis:
        return
    from dataclasses import asdict
    record = json.dumps({**asdict(entry), "node": "cli"}, ensure_ascii=False,
                        separators=(",", ":")).encode()
    if not _append_shared(config.server.redis, "audit", record):
        print("hearth facilitator: the audit record is in this node's audit.jsonl only: "
              "Redis could not be reached", file=sys.stderr)


def _append_shared(url: str, stream: str, record: bytes) -> bool:
    """One record appended to a shared log in Redis; False when Redis cannot be reached."""
    reactor = install_reactor()
    from twisted.internet.defer import ensureDeferred

    from hearth.web.redis_broker import RedisBroker
    broker = RedisBroker(url)
    result: dict[str, Any] = {}

    async def append() -> None:
        await broker.start()
        try:
            result["id"] = await broker.append(stream, record)
        finally:
            await broker.stop()

    d = ensureDeferred(append())
    d.addErrback(lambda _: None)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    return result.get("id") is not None


def facilitator(args: argparse.Namespace) -> int:
    import time

    from hearth.moderation.accounts import AccountError, AccountStore, new_totp_secret, totp_uri
    config = load(args.config, None)
    if config is None:
        return 2
    store = AccountStore.in_data_dir(Path(config.server.data_dir))
    action = args.facilitator_command
    try:
        if action == "list":
            accounts = store.all()
            if not accounts:
                print(f"No accounts in {store.path}. Add one: hearth facilitator add NAME")
            for a in accounts:
                created = time.strftime("%Y-%m-%d", time.gmtime(a.created))
                print(f"{a.name}\t{a.role}\ttotp {'on' if a.has_totp else 'off'}\t"
                      f"added {created}")
            return 0
        if action == "remove":
            account = store.remove(args.name)
            _audit_account_change(config, "remove", account.name)
            print(f"Removed {account.name}; its sessions end and the roles it holds in rooms "
                  "are withdrawn within seconds, on every node.")
            return 0
        if action == "totp":
            if args.disable:
                account = store.set_totp(args.name, None)
                _audit_account_change(config, "totp.off", account.name)
                print(f"TOTP is off for {account.name}: a password alone signs in.")
                return 0
            secret = new_totp_secret()
            account = store.set_totp(args.name, secret)
            _audit_account_change(config, "totp.on", account.name)
            print(f"TOTP is on for {account.name}. Add it to an authenticator app now: "
                  "it is shown only this once.\n"
                  f"  {totp_uri(secret, account.name, config.organisation.name)}\n"
                  f"  secret (to type in): {' '.join(secret[i:i + 4] for i in range(0, len(secret), 4))}\n"
                  "Signing in now needs the app's 6-digit code; sessions signed in before "
                  "end at their next request.")
            return 0
        if action in ("add", "reset"):
            from hearth.moderation.accounts import check_name
            name = check_name(args.name) if action == "add" else args.name
            password = _read_password(args, name)
            if password is None:
                return 1
            if action == "add":
                role = "operator" if args.operator else "facilitator"
                account = store.add(name, password, time.time(), role=role)
                _audit_account_change(config, "add", account.name)
                print(f"Added {account.name} ({account.role}) to {store.path}. "
                      "They sign in at /login.")
            else:
                account = store.reset(name, password)
                _audit_account_change(config, "reset", account.name)
                print(f"New password set for {account.name}; its sessions end and the roles "
                      "it holds in rooms are withdrawn within seconds.")
            return 0
    except AccountError as err:
        print(f"hearth facilitator {action}: {err}", file=sys.stderr)
        return 1
    return 2


INIT_HEADER = """\
# Hearth — this deployment's configuration, written by `hearth init` on {date}
# from Hearth's shipped config/hearth.toml. Run it with:
#     hearth serve --config {config}
# Check it after every change:  hearth check-config {config}
# Before real people use it: set [organisation] (name, texts), your [[rooms]],
# the on-call [[crisis.webhooks]] or [crisis.email], and put Hearth behind TLS
# (docs/operations.md).

"""


def init(args: argparse.Namespace) -> int:
    """A new deployment directory: DIR/hearth.toml, DIR/crisis, DIR/data with its secrets."""
    import re
    import shutil
    import time

    from hearth.moderation.journal import write_atomically
    from hearth.spaces.config import SHIPPED_CONFIG, CrisisConfig
    from hearth.web.datadir import DataDirError, ensure_dir, load_secrets
    target = args.dir.expanduser().absolute()
    config_path = target / "hearth.toml"
    if config_path.exists():
        print(f"hearth init: {config_path} already exists; nothing was changed. Move it away, "
              "or choose another directory.", file=sys.stderr)
        return 1
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n\n")  # the shipped file's own header: ours replaces it
    if rest and all(line.startswith("#") for line in first.splitlines()):
        text = rest
    data_dir = str(args.data_dir.expanduser().absolute()) if args.data_dir else "data"
    text, found = re.subn(r"^#?\s*data_dir\s*=.*$", f"data_dir = {json_str(data_dir)}", text,
                          count=1, flags=re.M)
    if not found:
        text = text.replace("[server]\n", f"[server]\ndata_dir = {json_str(data_dir)}\n", 1)
    shipped_crisis = Path(CrisisConfig.directory)
    crisis_dir = str(shipped_crisis) if args.shared_crisis else "crisis"
    text, found = re.subn(r"^directory\s*=.*$", f"directory = {json_str(crisis_dir)}", text,
                          count=1, flags=re.M)
    if not found:
        text = text.replace("[crisis]\n", f"[crisis]\ndirectory = {json_str(crisis_dir)}\n", 1)
    public_url = _public_url(args.public_url)
    if public_url is None:
        return 2
    text, found = re.subn(r"^public_url\s*=.*$", f"public_url = {json_str(public_url)}", text,
                          count=1, flags=re.M)
    if not found:
        text = text.replace("[crisis]\n", f"[crisis]\npublic_url = {json_str(public_url)}\n", 1)
    text = text.replace('# secret = "whsec_…"', f'# secret = "{new_webhook_secret()}"', 1)
    header = INIT_HEADER.format(date=time.strftime("%Y-%m-%d"), config=config_path)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if not args.shared_crisis and not (target / "crisis").exists():
            shutil.copytree(shipped_crisis, target / "crisis")
        data = ensure_dir(target / data_dir)  # an absolute data_dir stays as it is
        load_secrets(data)
        write_atomically(config_path, (header + text).encode("utf-8"), mode=0o600)
    except (OSError, DataDirError) as exc:
        print(f"hearth init: cannot write {target}: "
              f"{getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    config = load(config_path, None)
    if config is None:
        return 2
    print(f"Made {target}:\n"
          f"  {config_path}   the config (mode 0600: it will hold webhook secrets)\n"
          f"  {data}/   the data directory (mode 0700): secrets.json, and later the audit "
          "log, incidents, the outbox, accounts\n"
          + ("" if args.shared_crisis else
             f"  {target / 'crisis'}/   helplines, rule packs, escalation tiers (your copy)\n")
          + ("" if config.crisis.public_url else
             "crisis.public_url is not set: alerts will link to the first listener until you "
             "set it to the address people use (https://…)\n")
          + "Next:\n"
          f"  hearth check-config {config_path}\n"
          f"  hearth facilitator add NAME --operator --config {config_path}\n"
          f"  hearth drill --config {config_path}\n"
          f"  hearth serve --config {config_path}")
    return 0


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: whsec_ and the base64 of 32 random bytes."""
    import base64
    import secrets
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _public_url(given: str | None) -> str | None:
    """--public-url, or asked for on a terminal; "" when neither (set it later). None, after
    saying why, for something that is not an http(s) URL."""
    import re
    if given is None and sys.stdin.isatty():
        given = input("The address people will use to reach this Hearth, e.g. "
                      "https://groups.example.org\n(for the links in crisis alerts; empty to "
                      "set crisis.public_url later): ").strip()
    url = (given or "").strip().rstrip("/")
    if url and not re.match(r"^https?://[^\s/]+(/[^\s]*)?\Z", url):
        print(f"hearth init: --public-url: expected an http(s) URL like "
              f"https://groups.example.org, got {url!r}", file=sys.stderr)
        return None
    return url


def json_str(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    import json
    return json.dumps(value)


def privacy_report(args: argparse.Namespace) -> int:
    import time

    from hearth.web.retention import format_report, privacy_report, report_json
    config = load(args.config, None)
    if config is None:
        return 2
    now = time.time()
    stores = privacy_report(config, now)
    url = None if args.local else (args.redis or config.server.redis)
    if url:
        from hearth.web.retention import redis_stores

        async def inventory(broker: Any) -> Any:
            return await broker.inventory()
        found = with_redis(url, inventory, "what Hearth keeps in Redis",
                           "--local reports this node's data directory only")
        if found is None:
            return 1
        stores += redis_stores(found, config, now)
    print(report_json(stores) if args.json else format_report(config, stores, now), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "audit":
        return audit_export(args)
    if args.command == "drill":
        return drill(args)
    if args.command == "incidents":
        return incidents_export(args)
    if args.command == "facilitator":
        return facilitator(args)
    if args.command == "init":
        return init(args)
    if args.command == "privacy":
        return privacy_report(args)
    if args.command == "check-config":
        config = load(args.path, None)  # no PATH: the default config, as everywhere
        if config is None:
            return 2
        print(f"{config.source}: OK ({counted(len(config.rooms), 'room')})")
        from hearth.web.webtransport import describe
        voice = describe(config)
        if voice:
            print(f"{config.source}: {voice}")
        return 0
    parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
