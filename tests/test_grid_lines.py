"""A float that lies exactly on an exchange grid line is recognised without its decimal text,
and only then: the shortcut gives the exact decimal path's line, to the digit."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.sizing import (
    Grid,
    ceil_float,
    ceil_to,
    exact,
    exact_text,
    floor_float,
    floor_to,
    on_grid,
)

STEPS = [Decimal(s) for s in ("0.00001", "0.001", "0.01", "0.1", "1", "0.5", "0.25", "10", "1E+1")]
STEPS += [Decimal(s) for s in ("0.00000001", "0.10", "0.0025", "1.00000000", "1E-23", "7E+2")]


@st.composite
def on_and_near_lines(draw: st.DrawFn) -> tuple[float, Decimal]:
    step = draw(st.sampled_from(STEPS))
    steps = draw(st.one_of(st.integers(1, 10**6), st.integers(1, 10**17)))
    line = float(Decimal(steps) * step)
    value = draw(
        st.one_of(
            st.just(line),
            st.just(math.nextafter(line, math.inf)),
            st.just(math.nextafter(line, -math.inf)),
            st.floats(5e-324, 1e12),
        )
    )
    return value, step


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(on_and_near_lines())
def test_a_line_found_by_floats_is_the_exact_decimal_line(case: tuple[float, Decimal]) -> None:
    value, step = case
    line = on_grid(value, Grid(step))
    if line is not None:
        assert line == exact(value)
        assert str(line) == str(floor_to(exact(value), step))
    got, moved, got_f = floor_float(value, Grid(step))
    want = floor_to(exact(value), step)
    assert (str(got), moved, got_f) == (str(want), want != exact(value), float(want))
    ceiled, raised, ceiled_f = ceil_float(value, Grid(step))
    want = ceil_to(exact(value), step)
    assert (str(ceiled), raised, ceiled_f) == (str(want), want != exact(value), float(want))


def test_held_sizes_and_round_prices_are_recognised_as_lines() -> None:
    # A position of 0.1 BTC at stepSize 0.00001 and a close of 65000.0 at tickSize 0.01.
    assert str(on_grid(0.1, Grid(Decimal("0.00001")))) == "0.10000"
    assert str(on_grid(65_000.0, Grid(Decimal("0.01")))) == "65000.00"


def test_floats_off_a_line_or_beyond_fifteen_digits_are_left_to_the_exact_path() -> None:
    assert on_grid(math.nextafter(0.1, 1.0), Grid(Decimal("0.00001"))) is None
    assert on_grid(0.100001, Grid(Decimal("0.00001"))) is None
    assert on_grid(12345678.123456789, Grid(Decimal("1E-9"))) is None
    assert on_grid(0.0, Grid(Decimal("0.01"))) is None


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.floats(), st.sampled_from([1e-4, 9.999999999999999e-05, 1e16, 1e15, -0.0])))
def test_a_float_reads_as_its_exact_decimal_without_building_one(value: float) -> None:
    assert exact_text(value) == str(exact(value))
