"""The benchmark scripts refuse a count that is not a positive whole number by naming the flag
(argparse's exit 2), instead of a traceback halfway through a run of several minutes."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
_spec = importlib.util.spec_from_file_location("bench_flags", BENCHMARKS / "flags.py")
assert _spec is not None and _spec.loader is not None
flags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flags)  # by path: the scripts' folder stays off sys.path
count, bar_counts, MIN_BARS = flags.count, flags.bar_counts, flags.MIN_BARS


def test_a_count_is_a_whole_number_of_at_least_one() -> None:
    assert count("5") == 5
    for bad, why in (("0", "is below 1"), ("-3", "is below 1"), ("2.5", "not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            count(bad)


def test_bar_counts_are_comma_separated_and_long_enough_to_time_the_engine() -> None:
    assert bar_counts("20000,1000000") == [20_000, 1_000_000]
    with pytest.raises(argparse.ArgumentTypeError, match=f"fewer than {MIN_BARS:,}"):
        bar_counts(f"20000,{MIN_BARS - 1}")
    with pytest.raises(argparse.ArgumentTypeError, match="'x' is not a whole number"):
        bar_counts("20000,x")


@pytest.mark.slow
def test_a_benchmark_given_a_bad_count_exits_2_naming_the_flag() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_risk.py"), "--signals", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "argument --signals: '0' is below 1" in done.stderr
    assert "Traceback" not in done.stderr
