"""SIGHUP: reload what can change under a running Hearth, without dropping anyone.

What a reload reads again:

- the TLS certificate and key of every `ssl:` listener (a renewal: new
  connections get the new certificate; open ones keep theirs);
- the crisis data directory: helplines and rule packs (with their models only
  when [crisis] detector_model is on), served to browsers at
  /crisis/helplines.json and /crisis/rules/<lang>.json.

Each part is checked before it replaces the old one: a certificate that does
not load or crisis data with a problem is refused, logged with the reason,
and the running version stays. Nothing else changes: connections, rooms,
sessions and the outbox go on. What needs a restart (graceful: members
resume) is everything else in hearth.toml, including escalation tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from OpenSSL import SSL
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from hearth.spaces.config import ConfigError


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """A listener's TLS settings, replaceable while it listens: each new connection takes
    the context of the options current when it arrives."""

    def __init__(self, options: Any) -> None:
        self.options = options

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
        return SSL.Connection(self.options.getContext(), None)


def listen_endpoint(reactor: Any, description: str) -> tuple[Any, ReloadableTLS | None]:
    """The endpoint for a Twisted endpoint string; for an `ssl:` one, its TLS settings
    behind a ReloadableTLS (returned too), so a SIGHUP can swap the certificate."""
    endpoint = serverFromString(reactor, description)
    if not isinstance(endpoint, SSL4ServerEndpoint):
        return endpoint, None
    tls = ReloadableTLS(tls_options(endpoint))
    endpoint._sslContextFactory = tls
    return endpoint, tls


def tls_options(endpoint: SSL4ServerEndpoint) -> Any:
    """The certificate options Twisted's `ssl:` parser loaded (its endpoint keeps them under a
    private name; tests/live/test_ops_reload.py fails if that changes)."""
    options = getattr(endpoint, "_sslContextFactory", None)
    if options is None or not hasattr(options, "getContext"):
        raise RuntimeError("this Twisted's SSL4ServerEndpoint keeps its TLS settings elsewhere")
    return options


@dataclass
class Reloader:
    """What `hearth serve` reloads on SIGHUP (module docstring)."""

    reactor: Any
    root: Any  # the site's root resource (/crisis is one of its children)
    crisis_directory: Path
    # [crisis] detector_model: serve the packs with their models (a model is checked either way).
    detector_model: bool
    tls: list[tuple[str, ReloadableTLS]] = field(default_factory=list)  # (description, settings)
    log: ClassVar[Logger] = Logger()

    def reload(self) -> list[str]:
        """Reload each part; returns one sentence per part that was refused (kept as it was)."""
        problems = [*self._reload_tls(), *self._reload_crisis()]
        if problems:
            self.log.error("reload: {count} parts kept as they were: {problems}",
                           count=len(problems), problems=" | ".join(problems))
        else:
            self.log.info("reload: {certificates} TLS certificates and the crisis data "
                          "(helplines, rule packs) reloaded", certificates=len(self.tls))
        return problems

    def _reload_tls(self) -> list[str]:
        problems = []
        for i, (description, settings) in enumerate(self.tls):
            try:
                fresh = tls_options(serverFromString(self.reactor, description))
                fresh.getContext()  # loads and checks key and certificate now
            except Exception as exc:  # a bad file must not take the listener down
                problems.append(f"listener {i} (ssl): the certificate or key did not load "
                                f"({type(exc).__name__}); still serving the previous one")
                continue
            settings.options = fresh
        return problems

    def _reload_crisis(self) -> list[str]:
        from hearth.moderation.crisis_config import load_crisis
        from hearth.web.crisis_data import CrisisData
        try:
            crisis = load_crisis(self.crisis_directory, with_models=self.detector_model)
        except ConfigError as err:
            return [f"crisis data: {problem}" for problem in err.problems]
        self.root.putChild(b"crisis", CrisisData(crisis))
        return []
