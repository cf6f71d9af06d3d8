"""Text a client can send that a careless server trips on: lone surrogates (which JSON's
`\\uD8xx` escapes spell), proper pairs, non-characters, controls, bidi overrides."""

from __future__ import annotations

from hypothesis import strategies as st

NASTY = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00",
         "\ufffe", "\uffff", "\ufdd0", "\ufdef", "\U0001fffe", "\U0010ffff", "\x00", "\x1b",
         "\u202e", "\u200b", "\ufeff", "\\", '"', "a", "Ω"]

# Every string field of hearth.v1's client messages (docs/protocol.md).
STRING_FIELDS = ["room", "pseudonym", "locale", "ticket", "token", "dh", "sig", "body",
                 "commitment", "zone", "to", "from", "text", "franking_key", "tag", "reason",
                 "member", "corner", "category", "severity", "pack", "incident", "action",
                 "outcome", "ref", "type", "avatar"]


def nasty_text(max_size: int = 8) -> st.SearchStrategy[str]:
    """Short strings built from NASTY (surrogates included: json.dumps escapes them)."""
    return st.lists(st.sampled_from(NASTY), min_size=1, max_size=max_size).map("".join)
