"""Annualised figures that mean what they say on any window (docs/metrics.md).

backtesting.py annualises daily returns. That needs enough days: on a 3-day run it has two or
three daily returns, compounds their variance over 365 days, and a steady loser's volatility
shrinks towards zero, so its Sharpe reads in the millions. So the return frequency is chosen
by what the window supports: daily (backtesting.py's method and numbers) when there are at
least `MIN_RETURNS` daily returns, else hourly, else per bar, each with the plain arithmetic
ratios (mean / std × √periods). A ratio whose denominator is numerical noise is n/a with the
reason, never a number; so is a return compounded to a year from under `MIN_RETURNS` daily
returns (an extrapolation: 21 minutes' 0.37 % read 1e42 %)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

DAY_MS = 86_400_000
MIN_RETURNS = 20
NOISE_FLOOR = 1e-9  # a per-period return spread below this is float noise, not volatility
HOUR_MS = 3_600_000
RATIOS = ("Sharpe Ratio", "Sortino Ratio", "Calmar Ratio")
COMPOUNDED = ("Return (Ann.) [%]", "CAGR [%]")  # the window's growth compounded to a year
ANNUALISED = ("Return (Ann.) [%]", "CAGR [%]", "Volatility (Ann.) [%]", *RATIOS)

Frequency = Literal["daily", "hourly", "per bar", "none"]


class Basis(BaseModel):
    """Which returns the annualised figures come from, and why any of them is n/a."""

    frequency: Frequency
    periods_per_year: float | None
    returns: int
    method: str
    not_available: dict[str, str] = {}

    def describe(self) -> str:
        if self.frequency == "none":
            return self.method
        return (
            f"{self.frequency.replace(' ', '-')} returns ({self.returns:,}), "
            f"{self.periods_per_year:,.0f} "
            f"periods per year; {self.method}"
        )


def geometric_mean(returns: np.ndarray) -> float:
    grown = np.nan_to_num(returns) + 1.0
    if not len(grown):
        return float("nan")
    if np.any(grown <= 0):
        return 0.0
    return float(np.exp(np.log(grown).mean()) - 1.0)


def daily_returns(equity: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
    """backtesting.py's: between the last equity of consecutive UTC days that have bars."""
    day = times_ms // DAY_MS
    last_of_day = np.r_[np.flatnonzero(day[1:] != day[:-1]), len(day) - 1]
    closes = equity[last_of_day]
    return closes[1:] / closes[:-1] - 1.0


def _hourly_returns(equity: np.ndarray, times_ms: np.ndarray) -> np.ndarray:
    """From the starting equity to the last equity of each UTC hour: covers the whole window."""
    hour = times_ms // HOUR_MS
    last = np.r_[np.flatnonzero(np.diff(hour)), len(hour) - 1]
    points = np.r_[equity[0], equity[last]] if last[0] else equity[last]
    return points[1:] / points[:-1] - 1.0


def choose_basis(
    equity: np.ndarray,
    times_ms: np.ndarray,
    interval_ms: int,
    days_per_year: int,
    bars_per_session: float | None = None,
) -> tuple[Basis, np.ndarray]:
    """The coarsest return frequency with at least MIN_RETURNS returns, and those returns.
    `bars_per_session` marks an intraday stock run: its year is `days_per_year` sessions of
    that many bars, not 24-hour days, so it skips hourly returns and annualises per bar."""
    if interval_ms <= DAY_MS:
        day = daily_returns(equity, times_ms)
        if len(day) >= MIN_RETURNS:
            method = "backtesting.py's method (compounded daily returns)"
            return Basis(
                frequency="daily", periods_per_year=days_per_year, returns=len(day), method=method
            ), day
    plain = "arithmetic: Sharpe = mean / std × √periods (the window is too short for daily)"
    if bars_per_session is not None and interval_ms < DAY_MS:
        return _per_session_bar(equity, days_per_year, bars_per_session, plain)
    if interval_ms < HOUR_MS:
        hourly = _hourly_returns(equity, times_ms)
        if len(hourly) >= MIN_RETURNS:
            periods = days_per_year * 24
            return Basis(
                frequency="hourly", periods_per_year=periods, returns=len(hourly), method=plain
            ), hourly
    per_bar = equity[1:] / equity[:-1] - 1.0
    if len(per_bar) >= MIN_RETURNS:
        periods = days_per_year * DAY_MS / interval_ms
        return Basis(
            frequency="per bar", periods_per_year=periods, returns=len(per_bar), method=plain
        ), per_bar
    method = f"not annualised: {len(per_bar)} returns, fewer than {MIN_RETURNS} at any frequency"
    return Basis(frequency="none", periods_per_year=None, returns=len(per_bar), method=method), (
        per_bar
    )


def _per_session_bar(
    equity: np.ndarray, sessions: int, bars: float, plain: str
) -> tuple[Basis, np.ndarray]:
    per_bar = equity[1:] / equity[:-1] - 1.0
    if len(per_bar) < MIN_RETURNS:
        method = f"not annualised: {len(per_bar)} returns, fewer than {MIN_RETURNS}"
        return Basis(
            frequency="none", periods_per_year=None, returns=len(per_bar), method=method
        ), (per_bar)
    method = f"{sessions} sessions × {bars:g} bars per session; {plain}"
    return Basis(
        frequency="per bar", periods_per_year=sessions * bars, returns=len(per_bar), method=method
    ), per_bar


def annualised(
    equity: np.ndarray,
    times_ms: np.ndarray,
    interval_ms: int,
    max_drawdown: float,
    days_per_year: int,
    bars_per_session: float | None = None,
) -> tuple[dict[str, float], Basis]:
    """Return (Ann.), CAGR, Volatility (Ann.) and the three ratios; NaN where n/a, with the
    reason in `Basis.not_available`."""
    basis, returns = choose_basis(equity, times_ms, interval_ms, days_per_year, bars_per_session)
    if basis.frequency == "none":
        reason = f"too short to annualise ({basis.method.removeprefix('not annualised: ')})"
        basis.not_available = dict.fromkeys(ANNUALISED, reason)
        return dict.fromkeys(ANNUALISED, float("nan")), basis
    periods = float(basis.periods_per_year or 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = (_daily if basis.frequency == "daily" else _plain)(returns, periods)
        values["CAGR [%]"] = _cagr(equity, times_ms)
        values["Calmar Ratio"] = values["Return (Ann.) [%]"] / 100 / max_drawdown
    reasons = _reasons(values, returns, max_drawdown, basis.frequency)
    if basis.frequency == "hourly" or (basis.frequency == "per bar" and interval_ms < DAY_MS):
        reasons.update(dict.fromkeys(COMPOUNDED, _too_short_to_compound(times_ms)))
    basis.not_available = reasons
    return {k: float("nan") if k in reasons else float(values[k]) for k in ANNUALISED}, basis


def _daily(day: np.ndarray, periods: float) -> dict[str, float]:
    """backtesting.py's compute_stats, formula for formula (risk-free rate 0)."""
    grown = np.float64(1 + geometric_mean(day))
    annual = grown**periods - 1
    variance = day.var(ddof=1)
    volatility = np.sqrt((variance + grown**2) ** periods - grown ** (2 * periods))
    downside = np.sqrt(np.mean(np.clip(day, -np.inf, 0) ** 2))
    return {
        "Return (Ann.) [%]": annual * 100,
        "Volatility (Ann.) [%]": volatility * 100,
        "Sharpe Ratio": annual / volatility,
        "Sortino Ratio": annual / (downside * np.sqrt(periods)),
    }


def _plain(returns: np.ndarray, periods: float) -> dict[str, float]:
    """Compounded return; arithmetic ratios, which stay bounded by the data on any window."""
    grown = np.float64(1 + geometric_mean(returns))
    std = returns.std(ddof=1)
    downside = np.sqrt(np.mean(np.clip(returns, -np.inf, 0) ** 2))
    scale = np.sqrt(periods)
    return {
        "Return (Ann.) [%]": (grown**periods - 1) * 100,
        "Volatility (Ann.) [%]": std * scale * 100,
        "Sharpe Ratio": returns.mean() / std * scale,
        "Sortino Ratio": returns.mean() / downside * scale,
    }


def _cagr(equity: np.ndarray, times_ms: np.ndarray) -> float:
    years = (times_ms[-1] - times_ms[0]) / DAY_MS / 365.25
    return ((equity[-1] / equity[0]) ** (1 / years) - 1) * 100 if years else float("nan")


def _too_short_to_compound(times_ms: np.ndarray) -> str:
    """Why a window of fewer than MIN_RETURNS daily returns has no compounded yearly figure."""
    minutes = (int(times_ms[-1]) - int(times_ms[0])) / 60_000
    span = (
        f"{minutes:,.0f} minutes"
        if minutes < 120
        else f"{minutes / 60:,.0f} hours"
        if minutes < 2_880
        else f"{minutes / 1_440:,.1f} days"
    )
    return (
        f"needs {MIN_RETURNS}+ daily returns: {span}' return compounded to a year is an "
        "extrapolation, not a return"
    )


def _reasons(
    values: dict[str, float], returns: np.ndarray, max_drawdown: float, frequency: str
) -> dict[str, str]:
    unit = "day" if frequency == "daily" else ("hour" if frequency == "hourly" else "bar")
    reasons: dict[str, str] = {}
    volatility = values["Volatility (Ann.) [%]"] / 100
    if not (returns.std(ddof=1) >= NOISE_FLOOR and volatility >= NOISE_FLOOR):
        flat = f"returns vary by less than {NOISE_FLOOR:g} per {unit}: no volatility to divide by"
        reasons["Volatility (Ann.) [%]"] = reasons["Sharpe Ratio"] = flat
    if not np.any(returns < -NOISE_FLOOR):
        reasons["Sortino Ratio"] = f"no losing {unit}: no downside to divide by"
    if frequency != "daily":
        reasons["Calmar Ratio"] = (
            f"needs {MIN_RETURNS}+ daily returns: a short window's drawdown against a return "
            "compounded to a year says nothing"
        )
    if not max_drawdown >= NOISE_FLOOR:
        reasons["Calmar Ratio"] = "no drawdown to divide by"
    for name, value in values.items():
        if name not in reasons and not np.isfinite(value):
            reasons[name] = "overflows when compounded to a year: the window is too short"
    if "Return (Ann.) [%]" in reasons:
        reasons.setdefault("Calmar Ratio", reasons["Return (Ann.) [%]"])
    return reasons
