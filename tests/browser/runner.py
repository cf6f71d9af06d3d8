"""Playwright's sync API on one worker thread, with Debian's Chromium and the flags we require.

The sync API refuses to run inside a running event loop, and a test process may already run
Twisted's asyncio reactor (pytest-twisted): so every Playwright call goes to one dedicated
worker thread. A call that outlives its deadline means a wedged page or driver: the runner
kills its own Playwright driver (children of this process, by pid), so the blocked call
raises and the worker thread ends instead of hanging the run; after that it is "wedged"
and tries nothing more.

Three users: tests/browser/harness.py (the pages against the live server; its calls come
back to the reactor as Deferreds), tests/browser/test_browser_vectors.py and
tests/browser/test_detector_browser.py (a test page served with web/static: `runner_page`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync"]
# For voice: a microphone without a permission prompt (add --use-file-for-fake-audio-capture).
FAKE_MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
LAUNCH_TIMEOUT = 90.0  # seconds to start the driver and Chromium
STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


def require_browser(chromium: str = CHROMIUM) -> None:
    """Skip where there is no browser, except in CI, where a missing browser is a failure."""
    reason = None
    if not Path(chromium).exists():
        reason = f"{chromium} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[test]')"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def kill_own_playwright_driver() -> None:
    """SIGKILL the Playwright driver processes that are children of this process, by pid."""
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == me and b"playwright" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


class PlaywrightThread:
    """Headless Chromium (`CHROMIUM`, `LAUNCH_ARGS` and any `extra_args`), driven from one thread."""

    def __init__(self, extra_args: Iterable[str] = ()) -> None:
        self.args = [*LAUNCH_ARGS, *extra_args]
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self.playwright: Any = None
        self.browser: Any = None  # playwright's Browser, once started
        self.wedged = False

    def start(self) -> None:
        """Blocking: the driver and Chromium, on the worker thread."""
        def launch() -> None:
            from playwright.sync_api import sync_playwright
            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                           args=self.args)
        self.run(launch, LAUNCH_TIMEOUT)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """fn() on the worker thread; whoever waits for it keeps its own deadline (see `wedge`)."""
        return self._worker.submit(fn)

    def run(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Blocking: fn() on the worker thread; past `timeout` the runner is wedged and it raises."""
        future = self.submit(fn)
        try:
            return future.result(timeout=timeout)
        except FuturesTimeout:
            self.wedge()
            raise

    def wedge(self) -> None:
        """A call outlived its deadline (a busy renderer beyond what a JS timer catches):
        killing our own driver makes the blocked call raise, so the worker thread ends."""
        self.wedged = True
        kill_own_playwright_driver()

    def close(self) -> None:
        def stop() -> None:
            if self.browser is not None:
                self.browser.close()
            if self.playwright is not None:
                self.playwright.stop()
        try:
            if not self.wedged:  # after a wedge the driver is dead: nothing left to stop
                self.run(stop, 30)
        finally:
            self._worker.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """`handler` on 127.0.0.1 (any free port), on a thread called `name`; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_static(test_dir: Path, test_files: Iterable[str], name: str) -> Iterator[str]:
    """web/static at /, and `test_files` of `test_dir` at /__test__/, on 127.0.0.1 (a secure
    context, so WebCrypto is there); yields the base URL."""
    allowed = set(test_files)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(STATIC), **kwargs)

        def translate_path(self, path: str) -> str:
            route = urlsplit(path).path
            if route.startswith("/__test__/"):
                file = route.removeprefix("/__test__/")
                return str(test_dir / file) if file in allowed else str(test_dir / "__missing__")
            return super().translate_path(path)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    with serving(Handler, name) as url:
        yield url


class RunnerPage:
    """One page whose module sets `window.runner` (with `withTimeout`) and then
    `window.runnerReady`; each call is raced against a JS timer and a Python deadline."""

    CALL_TIMEOUT_MS = 30_000

    def __init__(self, url: str) -> None:
        self.page_errors: list[str] = []
        self._page: Any = None
        self._thread = PlaywrightThread()
        try:
            self._thread.start()
            self._thread.run(lambda: self._open(url), LAUNCH_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def _open(self, url: str) -> None:
        page = self._thread.browser.new_page()
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.goto(url)
        try:
            page.wait_for_function("window.runnerReady === true", timeout=20_000)
        except Exception as exc:
            raise AssertionError(f"test page did not load: {self.page_errors}") from exc
        self._page = page

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        page = self._page
        return self._thread.run(lambda: page.evaluate(expression, arg), self.CALL_TIMEOUT_MS / 1000 + 15)

    def call(self, fn: str, *args: Any) -> Any:
        """window.runner[fn](...args), raced against a JS timer."""
        return self.evaluate(
            "([fn, args, ms]) => window.runner.withTimeout(window.runner[fn](...args), ms, fn)",
            [fn, list(args), self.CALL_TIMEOUT_MS],
        )

    def close(self) -> None:
        self._thread.close()


@contextlib.contextmanager
def runner_page(test_dir: Path, test_files: Iterable[str], page: str) -> Iterator[RunnerPage]:
    """`page` of `test_dir` (one of `test_files`), served with web/static, in its own Chromium;
    skips (fails in CI) where there is no browser."""
    require_browser()
    with serve_static(test_dir, test_files, f"static-{page}") as url:
        opened = RunnerPage(f"{url}/__test__/{page}")
        try:
            yield opened
        finally:
            opened.close()
