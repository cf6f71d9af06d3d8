"""tests/run.sh's vulnerability check: pip-audit over the pinned dependencies (constraints.txt).

    python tests/support/supply_chain.py constraints.txt

Exit 1 when a pinned version has a known vulnerability (each is listed with
the versions that fix it). When the advisory service cannot be reached, or
cannot tell about some packages (a private mirror's versions unknown to PyPI),
print a clear WARNING saying what was not audited and exit 0: an unreachable
service must not block the suite, but nobody should mistake it for a pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TIMEOUT = 600


def classify(report: dict[str, Any] | None, error: str = "") -> tuple[int, list[str]]:
    """(exit status, lines to print) for a pip-audit JSON report (None: it did not finish)."""
    if report is None:
        return 0, [f"WARNING: pip-audit could not reach a vulnerability service ({error}); "
                   "NOTHING WAS AUDITED. Run `pip-audit -r constraints.txt` where PyPI's JSON "
                   "API (or OSV) is reachable."]
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"VULNERABLE: {dep['name']} {dep.get('version')}: {vuln.get('id')} "
                         f"(fixed in: {fixes})")
    audited = len(deps) - len(skipped)
    if skipped:
        names = ", ".join(f"{d['name']} {d.get('version', '')}".strip() for d in skipped[:8])
        more = f" and {len(skipped) - 8} more" if len(skipped) > 8 else ""
        lines.append(f"WARNING: {len(skipped)} of {len(deps)} pinned packages could not be "
                     f"audited (the advisory service does not know these versions: {names}{more})"
                     + ("; NOTHING WAS AUDITED" if not audited else ""))
    if not vulnerable and audited:
        lines.append(f"pip-audit: no known vulnerabilities in the {audited} packages audited")
    return (1 if vulnerable else 0), lines


def run(requirements: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "audit.json"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--format", "json",
                 "--output", str(out), "--progress-spinner", "off", "--no-deps",
                 "--disable-pip"], capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            status, lines = classify(None, f"no answer within {TIMEOUT} s")
        else:
            try:
                report = json.loads(out.read_text())
            except (OSError, ValueError):
                last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
                status, lines = classify(None, last)
            else:
                status, lines = classify(report)
    for line in lines:
        print(line, file=sys.stderr if line.startswith(("WARNING", "VULNERABLE")) else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt")))
