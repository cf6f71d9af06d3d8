"""On-call delivery the way receivers check it: Standard Webhooks signatures verified by an
independent implementation, PagerDuty Events API v2, and e-mail over STARTTLS or implicit
TLS with authentication."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hearth.spaces.config import ConfigError
from tests.support.config import make_config
from tests.support.crisis import asks_for_help
from tests.support.live import LiveServer, sleep, start_server, until
from tests.support.smtp_receiver import SMTPReceiver
from tests.support.tls import self_signed
from tests.support.webhook_receiver import Receiver

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


async def with_server(crisis: dict[str, Any]) -> LiveServer:
    return await start_server(make_config(crisis={"max_backoff_seconds": 1.0, **crisis}))


@pytest_twisted.ensureDeferred
async def test_webhooks_verify_with_the_standard_webhooks_library() -> None:
    whsec = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    plain, standard = Receiver("a-plain-text-shared-secret"), Receiver(whsec)
    hooks = [{"name": "plain", "url": f"http://127.0.0.1:{plain.listen()}/h", "secret": plain.secret},
             {"name": "standard", "url": f"http://127.0.0.1:{standard.listen()}/h",
              "secret": whsec}]
    live = await with_server({"webhooks": hooks})
    try:
        person, incident = await asks_for_help(live.ws_url)
        await until(lambda: plain.calls and standard.calls, what="both webhooks")
        # The library's own use: the whsec_ secret as text, the plain secret as its bytes.
        for receiver, key in ((standard, whsec), (plain, plain.secret.encode())):
            call = receiver.calls[0]
            body = Webhook(key).verify(call.raw, call.headers)
            assert body["incident"] == incident
            assert call.headers["webhook-id"] == call.headers["idempotency-key"]
            with pytest.raises(WebhookVerificationError):  # a changed body is refused
                Webhook(key).verify(call.raw.replace(b"incident", b"incidenT"), call.headers)
            with pytest.raises(WebhookVerificationError):  # and a wrong key
                Webhook(b"x" * 32).verify(call.raw, call.headers)
        assert plain.verify(plain.calls[0])  # tests/support's own check agrees
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await plain.stop()
        await standard.stop()


def test_a_whsec_secret_must_be_base64_of_enough_bytes() -> None:
    def hook(secret: str) -> Any:
        return make_config(crisis={"webhooks": [{"name": "h", "url": "https://x.example/h",
                                                 "secret": secret}]})
    hook("whsec_" + base64.b64encode(b"k" * 24).decode())
    for bad in ("whsec_not*base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigError) as caught:
            hook(bad)
        assert "crisis.webhooks[0].secret" in str(caught.value)


@pytest_twisted.ensureDeferred
async def test_pagerduty_events_v2_trigger_retried_until_accepted() -> None:
    receiver = Receiver("unused-for-pagerduty", fail_first=1, code=202,
                        answer=b'{"status":"success","message":"Event processed"}')
    port = receiver.listen()
    live = await with_server({
        "public_url": "https://groups.example.org",
        "pagerduty": [{"name": "duty", "routing_key": ROUTING_KEY,
                       "url": f"http://127.0.0.1:{port}/v2/enqueue"}]})
    try:
        person, incident = await asks_for_help(live.ws_url, pseudonym="Quiet Otter")
        await until(lambda: receiver.calls, timeout=15, what="the PagerDuty event")
        assert receiver.refused == 1  # the first answer was 503: retried
        event = receiver.calls[0].body
        assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
        assert event["dedup_key"] == f"hearth-incident-{incident}"
        payload = event["payload"]
        assert payload["severity"] == "critical" and payload["source"] == "groups.example.org"
        assert incident in payload["summary"] and payload["custom_details"]["incident"] == incident
        assert payload["timestamp"].endswith("Z")
        assert event["links"][0]["href"] == f"https://groups.example.org/console#incident-{incident}"
        assert "Quiet Otter" not in receiver.calls[0].raw.decode()  # no identity, ever
        await until(lambda: not live.hearth.alerts.outbox.pending(), what="delivered")
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await receiver.stop()


def email(port: int, ca: Path, **extra: Any) -> dict[str, Any]:
    return {"email": {"smtp_host": "localhost", "smtp_port": port, "ca_file": str(ca),
                      "sender": "hearth@example.org", "on_call": ["oncall@example.org"],
                      **extra}}


@pytest_twisted.ensureDeferred
async def test_e_mail_over_starttls_with_authentication(tmp_path: Path) -> None:
    key, cert, _ = self_signed(tmp_path, "smtp")
    smtp = SMTPReceiver(tls=(key, cert), users={"hearth": "app-password-1234"})
    live = await with_server(email(smtp.listen(), cert, username="hearth",
                                   password="app-password-1234"))
    try:
        person, incident = await asks_for_help(live.ws_url)
        await until(lambda: smtp.messages, timeout=15, what="the e-mail")
        assert f"incident {incident}".encode() in smtp.messages[0]
        assert smtp.sessions[0].tls and smtp.sessions[0].user == "hearth"
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await smtp.stop()


@pytest_twisted.ensureDeferred
async def test_e_mail_over_implicit_tls(tmp_path: Path) -> None:
    key, cert, _ = self_signed(tmp_path, "smtps")
    smtp = SMTPReceiver(tls=(key, cert), implicit=True, users={"hearth": "app-password-1234"})
    live = await with_server(email(smtp.listen(), cert, tls="implicit", username="hearth",
                                   password="app-password-1234"))
    try:
        person, _ = await asks_for_help(live.ws_url)
        await until(lambda: smtp.messages, timeout=15, what="the e-mail")
        assert smtp.sessions[0].tls and smtp.sessions[0].user == "hearth"
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await smtp.stop()


@pytest.mark.parametrize("case", ["no STARTTLS offered", "wrong password", "untrusted certificate"])
@pytest_twisted.ensureDeferred
async def test_e_mail_is_never_sent_without_tls_or_with_bad_credentials(
        tmp_path: Path, case: str) -> None:
    key, cert, _ = self_signed(tmp_path, "smtp")
    _, stranger, _ = self_signed(tmp_path, "stranger")
    smtp = SMTPReceiver(tls=None if case == "no STARTTLS offered" else (key, cert),
                        users={"hearth": "app-password-1234"})
    password = "wrong-password-99" if case == "wrong password" else "app-password-1234"
    ca = stranger if case == "untrusted certificate" else cert
    live = await with_server(email(smtp.listen(), ca, username="hearth", password=password))
    failures: list[str] = []
    live.hearth.alerts.watchers.append(lambda channel, seconds: failures.append(channel)
                                       if seconds is None else None)
    try:
        person, _ = await asks_for_help(live.ws_url)
        await until(lambda: "email:primary" in failures, timeout=15, what="a failed attempt")
        await sleep(0.5)
        assert smtp.messages == []  # nothing in the clear, nothing unauthenticated
        assert live.hearth.alerts.outbox.pending("email:primary")  # kept, retried
        await person.close()
    finally:
        await live.hearth.service.stopService()
        await smtp.stop()


def test_e_mail_config_checks_tls_and_credentials() -> None:
    def load(**email_: Any) -> Any:
        return make_config(crisis={"email": {"smtp_host": "smtp.example.org", **email_}}).crisis.email
    assert (load().tls, load().smtp_port) == ("starttls", 587)
    assert load(tls="implicit").smtp_port == 465 and load(tls="none").smtp_port == 25
    for bad, key in (({"tls": "maybe"}, "tls"), ({"username": "u"}, "password"),
                     ({"password": "p"}, "username"),
                     ({"tls": "none", "username": "u", "password": "p"}, "tls")):
        with pytest.raises(ConfigError) as caught:
            load(**bad)
        assert f"crisis.email.{key}" in str(caught.value)


def test_pagerduty_over_plain_http_only_on_this_machine() -> None:
    def service(url: str) -> Any:
        return make_config(crisis={"pagerduty": [{"name": "duty", "routing_key": ROUTING_KEY,
                                                  "url": url}]}).crisis.pagerduty[0]
    assert service("http://127.0.0.1:9/v2/enqueue").url.startswith("http://127.0.0.1")
    assert service("https://events.eu.pagerduty.com/v2/enqueue").tier == "primary"
    for bad, key in (("http://events.pagerduty.com/v2/enqueue", "url"), ("nope", "url")):
        with pytest.raises(ConfigError) as caught:
            service(bad)
        assert f"crisis.pagerduty[0].{key}" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        make_config(crisis={"pagerduty": [{"name": "duty", "routing_key": "short"}]})
    assert "crisis.pagerduty[0].routing_key" in str(caught.value)
