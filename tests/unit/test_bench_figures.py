"""The bench's arithmetic, without servers (bench/scenarios.py, bench/report.py): the ladder
finds both bounds' knees, the light-load figure is the first step, the generator's
saturation is flagged, and every figure is judged against both baselines."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from bench import report, scenarios


def step(load: float, p99: float, clean: bool = True, loadgen: float = 50.0,
         key: str = "delivered_per_s") -> dict[str, Any]:
    return {"load": load, key: load * 9, "p50_ms": p99 / 2, "p99_ms": p99, "clean": clean,
            "ok": clean and p99 <= 100, "loadgen_cpu_pct": loadgen, "server_cpu_pct": 50.0,
            "server_us_per_msg": 5.0, "foreign_cpu_pct": 0.0, "lost": 0, "missing": 0,
            "reordered": 0}


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """A coroutine that never waits on anything, run to its end without an event loop."""
    try:
        while True:
            coro.send(None)
    except StopIteration as done:
        return done.value


def p99_at(load: float) -> float:
    """A server whose p99 passes 10 ms at 3,000/s and 100 ms at 9,000/s."""
    return 1.0 if load < 3000 else 20.0 if load < 9000 else 500.0


def test_the_ladder_bisects_towards_each_bound() -> None:
    seen: list[float] = []

    async def run(load: float) -> dict[str, Any]:
        seen.append(load)
        return {**step(load, p99_at(load)), "foreign_cpu_pct": 40.0 if not seen[1:] else 0.0,
                "server_queued_us": 25.0}
    settings = scenarios.Settings(max_steps=11, refine=3)
    steps = run_sync(scenarios.ladder(run, 800.0, settings, (100.0, 10.0)))
    loose = scenarios.knee(steps, "delivered_per_s")
    tight = scenarios.knee(steps, "delivered_per_s", 10.0)
    assert loose is not None and tight is not None
    assert 7000 <= loose["load"] < 9000 and 2400 <= tight["load"] < 3000
    assert len(steps) <= 11 + 2 * 3 and seen[0] == 800.0
    summary = scenarios.bounds_summary(steps, "delivered_per_s", 10.0)
    assert summary["light_load"] == 800.0 and summary["light_p99_ms"] == 1.0
    assert summary["light_foreign_cpu_pct"] == 40.0 and summary["light_server_queued_us"] == 25.0
    assert summary["max_delivered_per_s_tight"] == tight["delivered_per_s"]
    assert summary["tight_knee_found"] and summary["light_clean"]
    assert not summary["loadgen_saturated_loose"] and not summary["loadgen_saturated_tight"]


def test_the_voice_ladder_bisects_in_whole_rooms_and_goes_down_when_even_the_first_fails() -> None:
    async def run(rooms: float) -> dict[str, Any]:
        assert rooms == int(rooms)
        return step(rooms, 5.0 if rooms < 20 else 30.0 if rooms < 40 else 80.0, key="frames_per_s")
    settings = scenarios.Settings(max_steps=11, refine=3)
    steps = run_sync(scenarios.ladder(run, 6, settings, (50.0, 10.0), integer=True))
    tight = scenarios.knee(steps, "frames_per_s", 10.0)
    loose = scenarios.knee(steps, "frames_per_s", 50.0)
    assert tight is not None and loose is not None
    assert 16 <= tight["load"] < 20 and 33 <= loose["load"] < 40

    async def slow(rooms: float) -> dict[str, Any]:
        return step(rooms, 20.0 if rooms > 2 else 5.0, key="frames_per_s")
    steps = run_sync(scenarios.ladder(slow, 6, settings, (50.0, 10.0), integer=True))
    assert [s["load"] for s in steps][:2] == [6, 9] and min(s["load"] for s in steps) <= 2
    assert scenarios.knee(steps, "frames_per_s", 10.0) is not None


def test_a_step_that_lost_anything_passes_no_bound() -> None:
    assert not scenarios.passes(step(100, 0.5, clean=False), 10.0)
    assert scenarios.knee([step(100, 0.5, clean=False)], "delivered_per_s", 10.0) is None


def test_a_busy_generator_at_the_knee_is_flagged() -> None:
    steps = [step(800, 1.0), step(1200, 5.0, loadgen=95.0), step(1800, 50.0),
             step(2700, 500.0)]
    summary = scenarios.bounds_summary(steps, "delivered_per_s", 10.0)
    assert summary["loadgen_saturated_tight"]  # 95 % at the tight knee itself
    assert not summary["loadgen_saturated_loose"]


def side(loose: float, tight: float, light: float) -> dict[str, Any]:
    return {"max_delivered_per_s": loose, "max_delivered_per_s_tight": tight,
            "light_p99_ms": light, "light_clean": True, "lost": 0, "reordered": 0,
            "loadgen_saturated_loose": False, "loadgen_saturated_tight": False, "steps": []}


def test_every_figure_is_a_median_ratio_to_both_baselines() -> None:
    runs = [{"hearth": side(300, 200, 0.8), "autobahn": side(150, 50, 3.0),
             "node_ws": side(250, 210, 0.9)},
            {"hearth": side(320, 220, 0.7), "autobahn": side(160, 60, 2.0),
             "node_ws": side(260, 200, 1.0)},
            {"hearth": side(310, 210, 0.9), "autobahn": side(140, 55, 2.5),
             "node_ws": side(300, 230, 0.8)}]
    line = report.combine("chat", runs)
    figures = line["figures"]
    assert figures["loose"]["hearth"] == 310 and figures["loose"]["node_ws"] == 260
    assert figures["loose"]["vs_node_ws"] == round(sorted([300 / 250, 320 / 260, 310 / 300])[1], 3)
    assert figures["tight"]["vs_autobahn"] == round(sorted([200 / 50, 220 / 60, 210 / 55])[1], 3)
    goals = {g["goal"]: g["met"] for g in line["goals"]}
    assert goals["Hearth >= 1x Node.js ws, loose bound"] is True
    assert goals["Hearth >= 1x Node.js ws, tight bound"] is False  # 200/210 in the median run
    assert goals["light-load p99 <= 1 ms"] is True
    assert line["met"] is False and line["loadgen_saturated"] == []
    table = report.table([line])
    assert "vs Node ws" in table and "p99 <= 10 ms" in table


def test_the_server_has_a_room_for_every_step_the_voice_ladder_can_reach() -> None:
    from bench.__main__ import rooms_needed

    async def run(load: float) -> dict[str, Any]:
        return step(load, 1.0)  # passes every bound: the ladder climbs to its top

    for settings in (scenarios.Settings.full(), scenarios.Settings.quick_settings()):
        steps = run_sync(scenarios.ladder(run, settings.voice_start_rooms, settings, (10, 50),
                                          integer=True))
        assert max(s["load"] for s in steps) <= rooms_needed("voice", settings)
