"""`python -m bench.serve_on asyncio|uvloop ARGS...`: `hearth ARGS...` on the named event loop
under Twisted's asyncio reactor, to measure what the loop changes (`bench.profile --env
HEARTH_BENCH_LOOP=asyncio`); `hearth serve` itself runs on uvloop (web/cli.py)."""

from __future__ import annotations

import asyncio
import sys


def main(argv: list[str]) -> int:
    loop_name, rest = argv[0], argv[1:]
    if loop_name == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    elif loop_name == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        raise SystemExit(f"unknown loop {loop_name!r}: uvloop or asyncio")
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)  # before the CLI: it keeps a reactor already installed
    from hearth.web.cli import main as hearth
    return int(hearth(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
