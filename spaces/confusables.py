"""Unicode's confusables (UTS #39, "Unicode Security Mechanisms"): the skeleton of a text.

Two strings that look alike to a reader have the same skeleton: UTS #39 section 4 maps
every character to its prototype (Cyrillic U+0430 to Latin "a", U+2131 SCRIPT CAPITAL F to "F", "m" to "rn",
"1" and "I" to "l" …) after decomposing the text (NFD), and drops the characters that
are ignored when rendered (Default_Ignorable_Code_Point).

The prototypes come from Unicode's own data file, `spaces/confusables.txt` (committed
as published, its version and date in its header), turned into
`spaces/confusables_table.py` by

    python -m hearth.spaces.confusables spaces/confusables.txt > spaces/confusables_table.py

tests/unit/test_pseudonyms.py fails if the table and the file disagree. To take a newer
Unicode version: replace the file with the one from unicode.org/Public/security/, run
the command, run the tests.
"""

from __future__ import annotations

import hashlib
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15.0): never rendered
# by themselves (zero-width spaces and joiners, bidi controls, variation selectors,
# the Hangul fillers, tags). UTS #39 drops them from a skeleton; pseudonyms refuse them.
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF))


def is_default_ignorable(ch: str) -> bool:
    point = ord(ch)
    return any(lo <= point <= hi for lo, hi in DEFAULT_IGNORABLE)


@lru_cache(maxsize=1)
def prototypes() -> dict[str, str]:
    """Character -> its prototype (one or more characters), from the generated table."""
    from hearth.spaces.confusables_table import TABLE
    table: dict[str, str] = {}
    for line in TABLE.splitlines():
        source, _, target = line.partition(" ")
        table[chr(int(source, 16))] = "".join(chr(int(p, 16)) for p in target.split())
    return table


def skeleton(text: str) -> str:
    """UTS #39 skeleton(X): NFD, drop default ignorables, each character's prototype, NFD."""
    table = prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(ch, ch) for ch in decomposed if not is_default_ignorable(ch))
    return unicodedata.normalize("NFD", mapped)


# --- the generator ----------------------------------------------------------------------


def parse(source: str) -> list[tuple[int, tuple[int, ...]]]:
    """The data lines of confusables.txt: `SOURCE ; TARGET… ; MA # comment`."""
    pairs = []
    for line in source.splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        fields = [f.strip() for f in data.split(";")]
        if len(fields) < 3 or fields[2] != "MA":
            raise ValueError(f"not a confusables.txt data line: {line[:80]!r}")
        pairs.append((int(fields[0], 16), tuple(int(p, 16) for p in fields[1].split())))
    return pairs


def render(source: str) -> str:
    """The text of spaces/confusables_table.py for this confusables.txt."""
    header = [line[2:] for line in source.splitlines()[:10] if line.startswith("# ")]
    described = "; ".join(h for h in header if h.startswith(("Version:", "Date:")))
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    rows = "\n".join(f"{s:04X} {' '.join(f'{t:04X}' for t in target)}"
                     for s, target in sorted(parse(source)))
    return (
        '"""Generated from Unicode\'s confusables.txt by spaces/confusables.py: do not edit.\n\n'
        f"Source: spaces/confusables.txt ({described}),\n"
        f"SHA-256 {digest}.\n"
        "Each line: a character, then its prototype (code points in hex).\n"
        '"""\n\n'
        f'SOURCE_SHA256 = "{digest}"\n\n'
        f'TABLE = """\\\n{rows}\n"""\n')


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hearth.spaces.confusables confusables.txt", file=sys.stderr)
        return 2
    sys.stdout.write(render(Path(argv[0]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":  # pragma: no cover - the generator, run by hand
    raise SystemExit(main(sys.argv[1:]))
