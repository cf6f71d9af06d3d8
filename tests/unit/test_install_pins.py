"""What an operator runs installs the pinned versions, and the libraries whose internals
Hearth uses are bounded below their next major version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_run_command_installs_the_pins() -> None:
    readme = (ROOT / "README.md").read_text()
    run = readme.split("**Run**", 1)[1].split("\n\n", 2)[1]
    assert "pip install -c constraints.txt" in run, run


def test_the_operators_install_commands_use_the_pins() -> None:
    for line in (ROOT / "docs" / "operations.md").read_text().splitlines():
        if "pip install" in line and "-e" in line:
            assert "-c constraints.txt" in line, line


def test_twisted_and_autobahn_have_upper_bounds_the_pins_meet() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$",
                           (ROOT / "constraints.txt").read_text(), re.M))
    for name in ("twisted", "autobahn"):
        spec = next(d for d in deps if re.match(rf"{name}\b", d, re.I))
        upper = re.search(r"<(\d+)", spec)
        assert upper, f"{spec}: no upper bound"
        pinned = next(v for k, v in pins.items() if k.lower() == name)
        assert int(pinned.split(".")[0]) < int(upper.group(1)), (spec, pinned)
