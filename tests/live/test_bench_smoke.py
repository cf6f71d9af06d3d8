"""The benchmark still runs end to end (issues 9 and 20): `python -m bench chat --quick`.

Shape only, never speed: a timed assertion here would fail on a busy CI
machine and prove nothing. What it guards against is the bench rotting as
the protocol and the server change: a real `hearth serve`, the autobahn relay
and the Node.js ws relay (installed from npm by the bench, pinned) are started,
joined and loaded, and one JSON line comes out per scenario with every figure
against both baselines.
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
        cwd=ROOT, capture_output=True, text=True, timeout=300,  # a busy machine: slower, not wrong
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    [line] = lines
    assert line["scenario"] == "chat" and line["ratio_of"] == "max_delivered_per_s"
    assert isinstance(line["met"], bool) and line["runs"] == 1
    for side in ("hearth", "autobahn", "node_ws"):
        figures = line[side]
        assert figures["members"] == 100 and figures["rooms"] == 10
        # whether a step met its latency bound depends on the machine: not asserted
        assert figures["max_delivered_per_s"] >= 0 and figures["max_delivered_per_s_tight"] >= 0
        assert figures["light_load"] == 200.0 and figures["light_p99_ms"] > 0
        assert figures["lost"] == 0 and figures["reordered"] == 0
    assert line["ratio"] is None or isinstance(line["ratio"], float)
    assert set(line["figures"]) == {"loose", "tight", "light_p99"}
    for figure in line["figures"].values():
        assert {"hearth", "autobahn", "node_ws", "vs_autobahn", "vs_node_ws"} <= set(figure)
    assert [g["goal"] for g in line["goals"]][1:] == [
        "Hearth >= 1x Node.js ws, loose bound", "Hearth >= 1x Node.js ws, tight bound",
        "light-load p99 <= 1 ms"]
    assert isinstance(line["loadgen_saturated"], list)
    table = done.stdout.split("\n\n", 1)[1]  # the human table follows the JSON lines
    assert "vs Node ws" in table and "p99 <= 10 ms" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    steps = saved["runs"]["chat"][0]["hearth"]["steps"]
    assert steps and {"load", "delivered_per_s", "p99_ms", "server_cpu_pct"} <= set(steps[0])
