"""The bench's priority: a negative nice must rank it above other sessions' work, which
Linux's autogroup would otherwise undo (bench/servers.py group_priority)."""

from __future__ import annotations

from pathlib import Path

from bench.servers import group_priority, short_slice


def refuse() -> int:
    raise PermissionError(1, "Operation not permitted")


def never(level: int) -> bool:
    raise AssertionError("no time slice asked for here")


def paths(tmp_path: Path, enabled: str = "1") -> tuple[Path, Path]:
    autogroup, own = tmp_path / "enabled", tmp_path / "autogroup"
    autogroup.write_text(enabled + "\n")
    own.write_text("/autogroup-7 nice 0\n")
    return autogroup, own


def test_a_negative_nice_gives_the_benchs_own_session_group_that_nice(tmp_path: Path) -> None:
    autogroup, own = paths(tmp_path)
    sessions: list[int] = []
    shortened: list[int] = []
    note = group_priority(autogroup, own, setsid=lambda: sessions.append(1) or 1,
                          nice=lambda: -10, leads_session=lambda: False,
                          shorten=lambda level: shortened.append(level) or True)
    assert sessions == [1] and own.read_text() == "-10" and "nice -10" in note
    assert shortened == [-10] and "time slice 100 us" in note


def test_a_bench_started_under_setsid_raises_its_own_group(tmp_path: Path) -> None:
    autogroup, own = paths(tmp_path)
    note = group_priority(autogroup, own, setsid=refuse, nice=lambda: -10,
                          leads_session=lambda: True, shorten=lambda level: False)
    assert own.read_text() == "-10" and "nice -10" in note and "slice" not in note


def test_a_bench_that_cannot_leave_its_callers_session_raises_nothing(tmp_path: Path) -> None:
    autogroup, own = paths(tmp_path)
    note = group_priority(autogroup, own, setsid=refuse, nice=lambda: -10,
                          leads_session=lambda: False, shorten=never)
    assert own.read_text() == "/autogroup-7 nice 0\n"  # the caller's session keeps its weight
    assert "setsid -w" in note


def test_nothing_changes_at_nice_0_or_without_autogroup(tmp_path: Path) -> None:
    for enabled, level in (("1", 0), ("1", 15), ("0", -10)):
        autogroup, own = paths(tmp_path, enabled)
        assert group_priority(autogroup, own, setsid=refuse, nice=lambda level=level: level,
                              leads_session=lambda: False, shorten=never) == ""
        assert own.read_text() == "/autogroup-7 nice 0\n"
    assert group_priority(tmp_path / "absent", tmp_path / "autogroup", setsid=refuse,
                          nice=lambda: -10, shorten=never) == ""


def test_a_zero_slice_leaves_the_kernels_own_slice() -> None:
    """HEARTH_BENCH_SLICE_US=0 (an A/B of the short slice) asks the kernel for nothing."""
    assert short_slice(0, 0) is False
