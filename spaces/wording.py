"""Counts in sentences people read: "1 second", "2 seconds", never "1 seconds".

English only: the server's human sentences (protocol errors, the command line, config
problems) are English. The pages count in their own language through the catalogs'
plural forms (ngettext in the templates, web/i18n.py).
"""

from __future__ import annotations

__all__ = ["counted"]


def counted(n: float, singular: str, plural: str | None = None) -> str:
    """`n` and its noun: the singular for exactly one, else `plural` (default: singular + "s").
    A whole float shows without its ".0"."""
    number = str(n) if isinstance(n, int) else f"{n:g}"
    return f"{number} {singular if n == 1 else (plural or singular + 's')}"
