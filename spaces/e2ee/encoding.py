"""Byte encodings shared by every E2EE format: length-prefixed fields, integers, base64.

Every byte string that is signed, MACed, used as AAD or as HKDF info is built
by `fields(label, ...)`: the label and each field are written as a 4-byte
big-endian length followed by the bytes. Length prefixes make the encoding
injective, so no two different inputs can ever sign or MAC the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import re

from hearth.spaces.e2ee import errors
from hearth.spaces.e2ee.errors import E2EEError

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

# Standard alphabet with padding, as everywhere on the wire. `b64decode(validate=True)`
# alone would still accept a missing final pad in some versions; the pattern is exact.
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def u32(value: int) -> bytes:
    """4-byte big-endian; refuses what does not fit rather than wrapping."""
    if isinstance(value, bool) or not 0 <= value <= U32_MAX:
        raise ValueError("u32 out of range")
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    """8-byte big-endian; every integer inside `fields` is written this way."""
    if isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ValueError("u64 out of range")
    return value.to_bytes(8, "big")


def utf8(text: str) -> bytes:
    """UTF-8 without normalisation; lone surrogates cannot be encoded and are refused."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise E2EEError(errors.MALFORMED, "text is not valid Unicode") from None


def fields(label: str, *parts: bytes) -> bytes:
    """`len(label) || label || len(p1) || p1 || ...`, lengths as u32 big-endian."""
    out = bytearray()
    for part in (label.encode("ascii"), *parts):
        out += u32(len(part))
        out += part
    return bytes(out)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, *, length: int | None = None, code: str = errors.MALFORMED) -> bytes:
    """Strict standard base64 (padding required); optionally of an exact decoded length."""
    if not isinstance(text, str) or _B64.fullmatch(text) is None:
        raise E2EEError(code, "not standard base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise E2EEError(code, "not standard base64") from None
    if length is not None and len(data) != length:
        raise E2EEError(code, f"expected {length} bytes")
    return data


# First byte of every binary body; the second byte names the body type.
WIRE_VERSION = 0x01
