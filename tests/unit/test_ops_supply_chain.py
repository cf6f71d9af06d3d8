"""Supply chain: every dependency is pinned in constraints.txt, run.sh installs and audits
exactly those, and the audit step fails on a vulnerability but only warns when blind."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from tests.support.supply_chain import classify

ROOT = Path(__file__).resolve().parents[2]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            out[canonical(name)] = version
    return out


def test_every_declared_dependency_is_pinned_and_installed_at_its_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pinned = pins()
    for requirement in declared:
        name = canonical(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])
        assert name in pinned, f"{name} is a dependency but not in constraints.txt: regenerate it"
        installed = metadata.version(name)
        assert installed == pinned[name], (
            f"{name}: installed {installed}, pinned {pinned[name]} (bash tests/run.sh installs "
            "the pins; or regenerate constraints.txt, see its header)")


def test_run_sh_installs_the_pins_and_audits_them() -> None:
    script = (ROOT / "tests" / "run.sh").read_text()
    assert "-c constraints.txt -e '.[test]'" in script
    assert "tests/support/supply_chain.py constraints.txt" in script
    assert script.index("supply_chain.py") < script.index("pytest -q")


def test_run_sh_keeps_each_test_file_on_one_worker() -> None:
    """Files run side by side, but a file's module fixtures (a Redis Cluster, a built wheel, a
    page's vectors) are made once: never split one file over two workers."""
    command = next(line for line in (ROOT / "tests" / "run.sh").read_text().splitlines()
                   if line.startswith(".venv/bin/python -m pytest"))
    assert " -n " in command and "--dist loadfile" in command and command.endswith('"$@"')


def test_a_known_vulnerability_fails_the_step() -> None:
    status, lines = classify({"dependencies": [
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}]},
        {"name": "twisted", "version": "26.10.0", "vulns": []}]})
    assert status == 1
    assert any("VULNERABLE: jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in: 3.1.3)" in x
               for x in lines)


def test_a_clean_audit_passes() -> None:
    status, lines = classify({"dependencies": [{"name": "twisted", "version": "26.10.0",
                                                "vulns": []}]})
    assert status == 0 and lines == ["pip-audit: no known vulnerabilities in the 1 packages "
                                     "audited"]


def test_an_unreachable_or_ignorant_service_warns_and_goes_on() -> None:
    status, lines = classify(None, "Failed to resolve 'api.osv.dev'")
    assert status == 0 and "NOTHING WAS AUDITED" in lines[0] and "api.osv.dev" in lines[0]
    status, lines = classify({"dependencies": [
        {"name": "twisted", "skip_reason": "Dependency not found on PyPI"}]})
    assert status == 0
    assert lines == ["WARNING: 1 of 1 pinned packages could not be audited (the advisory "
                     "service does not know these versions: twisted); NOTHING WAS AUDITED"]
