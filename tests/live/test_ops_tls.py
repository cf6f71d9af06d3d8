"""Hearth serving TLS itself: an ssl: endpoint, a wss:// client that checks the certificate,
and HSTS on https pages."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from hearth.client.websocket import HearthClient
from hearth.web.service import listener_url, make_hearth
from tests.support.config import make_config


def self_signed(directory: Path, name: str = "hearth-test") -> tuple[Path, Path, bytes]:
    """A key and a certificate for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    return key_path, cert_path, pem


def https_get(url: str, cafile: Path) -> tuple[int, dict[str, str]]:
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        return response.status, dict(response.headers)


@pytest_twisted.ensureDeferred
async def test_wss_with_a_checked_certificate_and_hsts_on_https_pages(tmp_path: Path) -> None:
    key, cert, pem = self_signed(tmp_path)
    config = make_config()
    hearth = make_hearth(config, reactor,
                         [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        assert listener_url(hearth.listeners[0].port).startswith("https://")
        client = await HearthClient.connect(f"wss://127.0.0.1:{port}/ws", tls_ca=pem)
        welcome = await client.join("circle")
        assert welcome["room"]["id"] == "circle"
        other = await HearthClient.connect(f"wss://localhost:{port}/ws", tls_ca=pem)
        await other.join("circle")
        await client.next("member_joined")
        status, headers = await deferToThread(https_get, f"https://127.0.0.1:{port}/", cert)
        assert status == 200
        assert headers.get("Strict-Transport-Security") == "max-age=31536000"
        status, headers = await deferToThread(https_get, f"https://127.0.0.1:{port}/healthz",
                                              cert)
        assert status == 200 and "Strict-Transport-Security" in headers
        await client.close()
        await other.close()
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_certificate_from_another_authority_is_refused(tmp_path: Path) -> None:
    key, cert, _ = self_signed(tmp_path, "server")
    _, _, stranger = self_signed(tmp_path, "stranger")
    hearth = make_hearth(make_config(), reactor,
                         [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port
        with pytest.raises(Exception):  # noqa: B017 - OpenSSL's or autobahn's, either way refused
            client = await HearthClient.connect(f"wss://127.0.0.1:{port}/ws", tls_ca=stranger,
                                                timeout=5)
            await client.join("circle")
    finally:
        await hearth.service.stopService()


@pytest_twisted.ensureDeferred
async def test_plain_http_pages_carry_no_hsts() -> None:
    hearth = make_hearth(make_config(), reactor, ["tcp:0:interface=127.0.0.1"])
    hearth.service.startService()
    try:
        await hearth.when_listening()
        port = hearth.listeners[0].port.getHost().port

        def get() -> dict[str, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                return dict(r.headers)
        headers = await deferToThread(get)
        assert "Strict-Transport-Security" not in headers
    finally:
        await hearth.service.stopService()
