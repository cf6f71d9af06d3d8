"""`python -m bench.serve_on uvloop ARGS...`: `hearth ARGS...` with uvloop under Twisted's
asyncio reactor, for measuring what uvloop would change (bench.profile --env
HEARTH_BENCH_LOOP=uvloop); `hearth serve` itself runs on asyncio's own loop."""

from __future__ import annotations

import asyncio
import sys


def main(argv: list[str]) -> int:
    loop, rest = argv[0], argv[1:]
    if loop == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif loop != "asyncio":
        raise SystemExit(f"unknown loop {loop!r}: uvloop or asyncio")
    from hearth.web.cli import main as hearth
    return int(hearth(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
