"""The benchmark still runs end to end (issue 9): `python -m bench chat --quick`.

Shape only, never speed: a timed assertion here would fail on a busy CI
machine and prove nothing. What it guards against is the bench rotting as
the protocol and the server change: a real `hearth serve` and the baseline
relay are started, joined and loaded, and one JSON line comes out per scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_chat_bench_prints_one_json_line_with_both_sides(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "chat", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    [line] = lines
    assert line["scenario"] == "chat" and line["ratio_of"] == "max_delivered_per_s"
    assert isinstance(line["met"], bool) and line["runs"] == 1
    for side in ("hearth", "baseline"):
        figures = line[side]
        assert figures["members"] == 100 and figures["rooms"] == 10
        # whether a step met its latency bound depends on the machine: not asserted
        assert figures["max_delivered_per_s"] >= 0
        assert figures["lost"] == 0 and figures["reordered"] == 0
    assert line["ratio"] is None or isinstance(line["ratio"], float)
    assert "chat" in done.stdout.split("\n\n", 1)[1]  # the human table follows the JSON lines
    saved = json.loads((tmp_path / "results.json").read_text())
    steps = saved["runs"]["chat"][0]["hearth"]["steps"]
    assert steps and {"load", "delivered_per_s", "p99_ms", "server_cpu_pct"} <= set(steps[0])
