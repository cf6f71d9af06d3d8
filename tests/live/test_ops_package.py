"""Hearth as a package: the wheel, installed outside the repository, runs init, check-config,
serve and drill with its own config templates, crisis data, pages and static files.

The wheel is built offline from a copy of the sources (no stale build/ directory, no build
isolation). The fresh venv gets the wheel alone (--no-deps); its dependencies come from the
test venv's site-packages through a path file that is added after the install, so that
neither pip nor Python ever sees the test venv's editable install of Hearth.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("spaces", "moderation", "web", "client", "config", "pyproject.toml", "README.md",
           "LICENSE")


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a clean copy of the sources."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", work / "dist", source, cwd=work)
    [built] = (work / "dist").glob("hearth-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, dict[str, str]]]:
    """(the fresh venv's bin directory, an environment that runs it outside the repo)."""
    work = tmp_path_factory.mktemp("venv")
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
        "--no-deps", "--no-index", wheel, cwd=work)
    site = Path(run(venv / "bin" / "python", "-c",
                    "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work)
                .stdout.strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HEARTH_CONFIG", "VIRTUAL_ENV")}
    yield venv / "bin", env


def test_installed_wheel_runs_init_check_serve_and_drill(
        installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    bin_dir, env = installed
    hearth = bin_dir / "hearth"
    where = run(bin_dir / "python", "-c", "import hearth.web.cli as m, hearth.config as c; "
                "print(m.__file__); print(c.__file__)", cwd=tmp_path, env=env).stdout
    assert all(line.startswith(str(bin_dir.parent)) for line in where.split()), where
    version = run(hearth, "--version", cwd=tmp_path, env=env).stdout.strip()
    assert version == "hearth 0.1.0"
    licence = run(bin_dir / "python", "-c", "from importlib.metadata import metadata; "
                  "print(metadata('hearth')['License-Expression'])", cwd=tmp_path, env=env)
    assert licence.stdout.strip() == "AGPL-3.0-or-later"

    run(hearth, "init", tmp_path / "deploy", "--public-url", "https://groups.example.org",
        cwd=tmp_path, env=env)
    config = tmp_path / "deploy" / "hearth.toml"
    assert (tmp_path / "deploy" / "crisis" / "rules" / "en.toml").exists()
    assert "OK" in run(hearth, "check-config", config, cwd=tmp_path, env=env).stdout

    hook = Hook()
    with config.open("a") as f:
        f.write(f'\n[[crisis.webhooks]]\nname = "on-call"\nurl = "http://127.0.0.1:{hook.port}/"\n'
                'secret = "a-long-shared-webhook-secret"\n')
    served = subprocess.Popen([str(hearth), "serve", "--config", str(config), "--listen",
                               "tcp:0:interface=127.0.0.1"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = listening_port(served)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert "Evening circle (demo)" in response.read().decode()  # templates, config
        with urllib.request.urlopen(f"{base}/crisis/helplines.json", timeout=10) as response:
            assert "countries" in json.loads(response.read())  # crisis data
    finally:
        served.terminate()
        served.wait(20)
    drill = run(hearth, "drill", "--config", config, cwd=tmp_path, env=env, timeout=180)
    assert "Drill passed" in drill.stdout and hook.calls
    hook.stop()


def listening_port(served: subprocess.Popen[str], timeout: float = 30) -> int:
    import re
    deadline = time.monotonic() + timeout
    seen = ""
    assert served.stdout is not None
    while time.monotonic() < deadline:
        line = served.stdout.readline()
        seen += line
        found = re.search(r"Open https?://[0-9.]+:(\d+)/", line)
        if found:
            return int(found.group(1))
        if not line and served.poll() is not None:
            break
    raise AssertionError(f"the installed hearth serve did not start:\n{seen}")


class Hook:
    """An on-call webhook receiver in a thread (the drill runs in another process)."""

    def __init__(self) -> None:
        calls = self.calls = []  # type: list[bytes]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def test_the_wheel_holds_one_namespace_the_data_and_the_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"hearth", "hearth-0.1.0.dist-info"}, tops  # one namespace, nothing else
    assert not any(n.startswith("hearth/__init__") for n in names)  # a namespace package
    for needed in ("hearth/config/hearth.toml", "hearth/config/crisis/helplines.toml",
                   "hearth/config/crisis/escalation.toml", "hearth/config/crisis/rules/en.toml",
                   "hearth/web/templates/base.html", "hearth/web/static/js/room.js",
                   "hearth/web/static/i18n/en.json",
                   "hearth-0.1.0.dist-info/licenses/LICENSE"):
        assert needed in names, needed
    for folder, pattern in (("config/crisis/rules", "*.toml"),
                            ("config/crisis/rules", "*.model.json"), ("web/static/js", "*.js"),
                            ("web/templates", "*.html"), ("web/locale", "*.po")):
        for path in (ROOT / folder).rglob(pattern):
            assert f"hearth/{path.relative_to(ROOT)}" in names, f"{path} is not in the wheel"
    licence = zipfile.ZipFile(wheel).read("hearth-0.1.0.dist-info/licenses/LICENSE").decode()
    assert licence.startswith(" " * 20 + "GNU AFFERO GENERAL PUBLIC LICENSE")
