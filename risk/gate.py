"""The risk gate, the only maker of ApprovedOrder: pure, deterministic, never raises, and it
only shrinks; every change is an adjustment and every refusal a veto, with stable codes."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Final, NamedTuple

from pydantic import BaseModel

from market.models import SymbolRules
from risk.approval import claim_mint, client_order_id
from risk.limits import RiskLimits
from risk.models import (
    Approved,
    MarketView,
    OrderType,
    PortfolioView,
    Reason,
    ReasonCode,
    Side,
    SignalAction,
    TradeSignal,
    Verdict,
    Vetoed,
)
from risk.plain import Filters, Plain, PlainLimits
from risk.protections import TradingState, cooldown_lock, daily_loss_lock, drawdown_lock
from risk.sizing import (
    Cap,
    Grid,
    NoRoom,
    atr_stop,
    ceil_float,
    exact,
    exact_multiply,
    exact_text,
    fit,
    floor_float,
    floor_to,
    gross_exposure,
    on_grid,
    out_of_reach,
    risk_quantity,
)
from risk.state import RiskState, refresh
from risk.trusted import trusted
from risk.views import MarketFacts, PortfolioFacts, market_facts, portfolio_facts

_INF: Final = math.inf
_ZERO: Final = Decimal(0)  # a Decimal compares with a Decimal in half the time it takes with an int
_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_LIMIT_TYPES: Final = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_STOP_TYPES: Final = (OrderType.STOP, OrderType.STOP_LIMIT)
_PRICE_FIELDS: Final = ("limit_price", "stop_price", "stop_loss", "take_profit")
_SIZE_FIELDS: Final = ("quantity", "size_pct", "trailing_stop_pct", "trailing_stop_atr")

# On Python 3.11 an enum member read (`Side.BUY`) goes through EnumType.__getattr__, some
# twenty times a plain attribute read. The members every signal meets are read once, here
# (compiled, a final name is a plain C read); the reason codes from a plain namespace.
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_HOLD: Final = SignalAction.HOLD
_CLOSE: Final = SignalAction.CLOSE
_OPEN: Final = SignalAction.BUY
_MARKET: Final = OrderType.MARKET
_HALTED: Final = TradingState.HALTED
_REDUCING: Final = TradingState.REDUCING
_CODE: Final = SimpleNamespace(**ReasonCode.__members__)


_MINT: Final = claim_mint()  # the gate's alone; a call on it compiles to a direct call
_tuple_new: Final = tuple.__new__  # builds a NamedTuple without running its Python-level __new__


_KEPT: Final = 256  # models remembered; a process meets few, so a full reset when full is fine
_known: Final[dict[int, tuple[BaseModel, Any]]] = {}
"""Copies by the id of their model; each entry holds its model, so an id is never reused while
it is remembered."""


def _remember(model: BaseModel, make: type[Plain]) -> Any:
    """The plain copy of `model`, made and kept (risk.plain); here, where the gate looks it
    up at every signal, the lookup is compiled."""
    if len(_known) >= _KEPT:
        _known.clear()
    copy = make(model)
    _known[id(model)] = (model, copy)
    return copy


def plain_limits(limits: RiskLimits) -> PlainLimits:
    """A stand-in for `limits` with the same fields and `for_source`, read at plain speed."""
    found = _known.get(id(limits))
    if found is not None and found[0] is limits:
        return found[1]
    return _remember(limits, PlainLimits)


def filters_of(rules: SymbolRules) -> Filters:
    found = _known.get(id(rules))
    if found is not None and found[0] is rules:
        return found[1]
    return _remember(rules, Filters)


def _reason(code: ReasonCode, message: str) -> Reason:
    return trusted(Reason, {"code": code, "message": message})


def _vetoed(reasons: list[Reason]) -> Vetoed:
    return trusted(Vetoed, {"kind": "vetoed", "reasons": reasons})


def _veto(code: ReasonCode, message: str) -> Vetoed:
    return _vetoed([_reason(code, message)])


def _positive(value: float) -> bool:
    return 0.0 < value < _INF  # False for NaN too


def _finite(value: float) -> bool:
    """`math.isfinite`: compiled, that is a lookup on the module and a call."""
    return -_INF < value < _INF


def _clean(fields: dict[str, Any]) -> bool:
    """True exactly when `_signal_problems` finds nothing: the common case, told apart with
    plain comparisons before any message is written (a property test holds the two together).
    It reads the signal's fields from its `__dict__` (a model's attribute read is slower), one
    key at a time: compiled, each is a plain dict lookup, where an itemgetter was a call and
    its tuple an iteration."""
    quantity, size_pct = fields["quantity"], fields["size_pct"]
    trail_pct, trail_atr = fields["trailing_stop_pct"], fields["trailing_stop_atr"]
    limit, stop = fields["limit_price"], fields["stop_price"]
    loss, profit = fields["stop_loss"], fields["take_profit"]
    agreement, confidence = fields["agreement"], fields["confidence"]
    kind, decision_id = fields["order_type"], fields["decision_id"]
    return bool(
        (quantity is None or 0.0 < quantity < _INF)
        and (size_pct is None or 0.0 < size_pct < _INF)
        and (trail_pct is None or (trail_atr is None and 0.0 < trail_pct < _INF))
        and (trail_atr is None or 0.0 < trail_atr < _INF)
        and 0.0 <= confidence <= 1.0
        and (agreement is None or 0.0 < agreement <= 1.0)
        and (limit is None or 0.0 < limit < _INF)
        and (stop is None or 0.0 < stop < _INF)
        and (loss is None or 0.0 < loss < _INF)
        and (profit is None or 0.0 < profit < _INF)
        and (limit is not None or kind not in _LIMIT_TYPES)
        and (stop is not None or kind not in _STOP_TYPES)
        and decision_id.strip()
    )


def _signal_problems(signal: TradeSignal) -> list[Reason]:
    """Garbage in a signal (NaN, inf, <= 0, missing prices) is a veto, never an exception."""
    problems: list[str] = []
    if not signal.decision_id.strip():
        problems.append("decision_id is empty")
    sizes = signal.quantity, signal.size_pct, signal.trailing_stop_pct, signal.trailing_stop_atr
    for name, value in zip(_SIZE_FIELDS, sizes, strict=True):
        if value is not None and not 0.0 < value < _INF:
            problems.append(f"{name} {value} is not a positive finite number")
    if not 0.0 <= signal.confidence <= 1.0:
        problems.append(f"confidence {signal.confidence} is not within [0, 1]")
    if signal.agreement is not None and not 0.0 < signal.agreement <= 1.0:
        problems.append(f"agreement {signal.agreement} is not within (0, 1]")
    prices = signal.limit_price, signal.stop_price, signal.stop_loss, signal.take_profit
    for name, value in zip(_PRICE_FIELDS, prices, strict=True):
        if value is not None and not 0.0 < value < _INF:
            problems.append(f"{name} {value} is not a positive finite price")
    if signal.trailing_stop_pct is not None and signal.trailing_stop_atr is not None:
        problems.append("give a trailing stop as a percent or as ATRs, not both")
    if signal.order_type in _LIMIT_TYPES and signal.limit_price is None:
        problems.append(f"a {signal.order_type} order needs a limit_price")
    if signal.order_type in _STOP_TYPES and signal.stop_price is None:
        problems.append(f"a {signal.order_type} order needs a stop_price")
    return [_reason(_CODE.INVALID_SIGNAL, p) for p in problems]


def assess_facts(
    signal: TradeSignal,
    portfolio: PortfolioFacts,
    market: MarketFacts,
    now_ms: int,
    limits: RiskLimits,
    state: RiskState,
) -> Verdict:
    """Approve (possibly shrunk) or veto one signal. Exits of a held position stay possible in
    REDUCING and cooldown; HALTED blocks everything. Spot is long-only: no new shorts."""
    fields = signal.__dict__
    action, symbol, kind = fields["action"], fields["symbol"], fields["order_type"]
    if action is _HOLD:
        return _veto(_CODE.HOLD, "the signal holds: no order")
    if not _clean(fields):
        return _vetoed(_signal_problems(signal))
    market_symbol, last = market.symbol, market.last_price
    rules = filters_of(market.rules)
    if symbol != market_symbol or rules.symbol != symbol:
        return _veto(
            _CODE.UNKNOWN_SYMBOL,
            f"{symbol}: the market view and rules given are for {rules.symbol}",
        )
    if rules.status != "TRADING":
        return _veto(_CODE.UNKNOWN_SYMBOL, f"{symbol} is {rules.status}, not TRADING")
    if not 0.0 < last < _INF:
        return _veto(_CODE.INVALID_MARKET, f"last price {last} is not a positive number")
    if state.locks:
        halts = [
            _reason(lock.code, f"trading is HALTED: {lock.message}")
            for lock in state.locks
            if lock.level is _HALTED and lock.active(now_ms)
        ]
        if halts and not (signal.protective and action is _CLOSE):
            return _vetoed(halts)
    position = portfolio.positions.get(symbol)
    held = position.quantity if position is not None else 0.0
    if not _finite(held):
        return _veto(_CODE.INVALID_PORTFOLIO, f"held quantity {held} is not a number")
    if action is _CLOSE:
        if held == 0:
            return _veto(_CODE.NO_POSITION, f"no {symbol} position to close")
        side = _SELL if held > 0 else _BUY
    elif action is _OPEN:
        side = _BUY
    elif held > 0:
        side = _SELL
    else:
        return _veto(
            _CODE.SHORT_NOT_ALLOWED,
            f"spot is long-only: no {symbol} held, so a sell would open a short",
        )
    plain = plain_limits(limits)
    source = plain.sources[fields["source"]]
    fat = [] if kind is _MARKET else _fat_finger(signal, last, source)
    if held > 0 if side is _SELL else held < 0:
        if fat:
            return _vetoed(fat)
        return _exit(fields, portfolio, last, rules, now_ms, plain, held, side)
    return _entry(fields, portfolio, market, rules, now_ms, plain, source, state, held, fat)


def decide_facts(
    signal: TradeSignal,
    portfolio: PortfolioFacts,
    market: MarketFacts,
    now_ms: int,
    limits: RiskLimits,
    state: RiskState,
) -> tuple[Verdict, RiskState]:
    """`assess_facts`, and the state refreshed at `now_ms` with an approved order counted
    towards the rate limits: the one call a loop needs per signal. The rules read only the
    locks in force and the order times inside each window at `now_ms`, so the state is judged
    as it is and refreshed once, after (one new state, not two)."""
    verdict = assess_facts(signal, portfolio, market, now_ms, limits, state)
    return verdict, refresh(state, now_ms, placed=isinstance(verdict, Approved))


def assess(
    signal: TradeSignal,
    portfolio: PortfolioView,
    market: MarketView,
    now_ms: int,
    limits: RiskLimits,
    state: RiskState,
) -> Verdict:
    """`assess_facts` on the boundary's views (a tool's call, a recorded case)."""
    return assess_facts(
        signal, portfolio_facts(portfolio), market_facts(market), now_ms, limits, state
    )


def decide(
    signal: TradeSignal,
    portfolio: PortfolioView,
    market: MarketView,
    now_ms: int,
    limits: RiskLimits,
    state: RiskState,
) -> tuple[Verdict, RiskState]:
    """`decide_facts` on the boundary's views."""
    return decide_facts(
        signal, portfolio_facts(portfolio), market_facts(market), now_ms, limits, state
    )


def _fat_finger(signal: TradeSignal, last: float, source: Plain) -> list[Reason]:
    """A price far from the market is a typo or a hallucination, not an intent to honour."""
    found: list[Reason] = []
    kind = signal.order_type
    band = source.fat_finger_pct
    if kind in _LIMIT_TYPES:
        _check_band("limit_price", signal.limit_price, last, band, found)
    if kind in _STOP_TYPES:
        _check_band("stop_price", signal.stop_price, last, band, found)
    return found


def _check_band(
    name: str, price: float | None, last: float, band: float, found: list[Reason]
) -> None:
    if price is not None and abs(price / last - 1.0) > band:
        found.append(
            _reason(
                _CODE.FAT_FINGER,
                f"{name} {price:.10g} is {abs(price / last - 1.0):.2%} from the last price "
                f"{last:.10g}; the band is {band:.2%}",
            )
        )


class _Prices(NamedTuple):
    """The order's prices on the tick grid, rounded in the trader's favour (buys down, sells
    up), plus the price used for cost (`cost`) and for exchange notional checks (`ref`)."""

    limit: Decimal | None
    stop: Decimal | None
    ref: Decimal
    ref_f: float  # float(ref), found without the decimal's text where it is known already
    cost: float
    cost_exact: Decimal


def _prices(
    fields: dict[str, Any],
    side: Side,
    last: float,
    rules: Filters,
    adjustments: list[Reason],
) -> _Prices:
    """The order's prices from the signal's fields (its `__dict__`)."""
    tick = rules.tick
    limit = stop = None
    kind, limit_price, stop_price = (
        fields["order_type"],
        fields["limit_price"],
        fields["stop_price"],
    )
    if kind is not _MARKET:
        round_price = floor_float if side is _BUY else ceil_float
        if kind in _LIMIT_TYPES and limit_price is not None:
            limit, limit_f = _on_tick("limit_price", limit_price, round_price, tick, adjustments)
        if kind in _STOP_TYPES and stop_price is not None:
            stop, stop_f = _on_tick("stop_price", stop_price, round_price, tick, adjustments)
    if limit is not None:
        return _tuple_new(_Prices, (limit, stop, limit, limit_f, limit_f, limit))
    line = on_grid(last, tick)
    market_price = exact(last) if line is None else line  # one number: only the digits differ
    if stop is not None:
        if side is _BUY:  # a stop buy fills at the market, wherever the trigger was
            return _tuple_new(
                _Prices, (None, stop, stop, stop_f, max(stop_f, last), max(stop, market_price))
            )
        return _tuple_new(_Prices, (None, stop, stop, stop_f, stop_f, stop))
    if line is not None:
        ref, ref_f = line, last
    else:
        ref = floor_to(market_price, tick.step)
        ref_f = last if ref == market_price else float(ref)
    if side is _BUY:
        return _tuple_new(_Prices, (None, None, ref, ref_f, last, market_price))
    return _tuple_new(_Prices, (None, None, ref, ref_f, ref_f, ref))


def _on_tick(
    name: str,
    price: float,
    round_price: Callable[[float, Grid], tuple[Decimal, bool, float]],
    tick: Grid,
    adjustments: list[Reason],
) -> tuple[Decimal, float]:
    """The price on the tick grid, as its decimal and its float."""
    rounded, moved, rounded_f = round_price(price, tick)
    if moved:
        adjustments.append(
            _reason(_CODE.TICK_SIZE, f"{name} {exact_text(price)} rounded to tickSize: {rounded!s}")
        )
    return rounded, rounded_f


def _entry(
    fields: dict[str, Any],
    portfolio: PortfolioFacts,
    market: MarketFacts,
    rules: Filters,
    now_ms: int,
    limits: PlainLimits,
    source: Plain,
    state: RiskState,
    held: float,
    reasons: list[Reason],
) -> Verdict:
    """A buy that opens or adds to a long: every entry rule applies, then sizing and caps."""
    equity, cash, last = portfolio.equity, portfolio.cash, market.last_price
    if not (_positive(equity) and _finite(cash)):
        return _veto(
            _CODE.INVALID_PORTFOLIO, f"equity {equity} / cash {cash} are not usable numbers"
        )
    waived: list[Reason] = []
    reasons = reasons + _entry_blocks(
        fields, portfolio, market, now_ms, limits, source, state, waived
    )
    reasons += _position_rules(fields, portfolio, limits, source, held)
    if reasons:
        return _vetoed(reasons)

    adjustments: list[Reason] = []
    for waive in waived:
        adjustments.append(_reason(_CODE.UNWIND, f"an unwinding leg passes: {waive.message}"))
    prices = _prices(fields, _BUY, last, rules, adjustments)
    if prices.ref <= _ZERO:
        return _veto(_CODE.TICK_SIZE, f"price rounds to zero at tickSize {rules.tick_size!s}")
    cost = prices.cost

    trail = _trailing(fields, market, rules, source, cost, adjustments)
    # A veto, told from the decimal: isinstance on a model class is slow where it fails.
    if trail is not None and not isinstance(trail, Decimal):
        return trail
    stop = fields["stop_loss"]
    atr_used = False
    if stop is None and trail is None and source.atr_stop_multiple is not None:
        stop = atr_stop(cost, market.atr, source.atr_stop_multiple)
        atr_used = stop is not None
    stop_exact = None
    distance = math.inf if trail is None else float(trail) * cost  # the stop nearest the entry
    if stop is None:
        if trail is None and source.require_stop_loss:
            return _veto(
                _CODE.NO_STOP_LOSS,
                f"{fields['source']} entries must carry a stop-loss and no usable ATR can "
                "place one",
            )
    else:
        # rounded towards the entry: tighter
        stop_exact, _, stop_f = ceil_float(stop, rules.tick)
        if not stop_exact < prices.cost_exact:
            return _veto(
                _CODE.BAD_STOP, f"stop-loss {stop_exact!s} is not below the entry {cost:.10g}"
            )
        below = cost - stop_f
        if not below > 0:
            return _veto(_CODE.BAD_STOP, f"stop-loss {stop_exact!s} is too close to the entry")
        if below < distance:
            distance = below
        if atr_used:
            adjustments.append(
                _reason(
                    _CODE.ATR_STOP,
                    f"no stop-loss given: stop placed at {stop_exact!s}, "
                    f"{source.atr_stop_multiple:g} x ATR {market.atr:.8g} below {cost:.10g}",
                )
            )
    take_profit = None
    if fields["take_profit"] is not None:
        take_profit, _, _ = floor_float(fields["take_profit"], rules.tick)
        if not take_profit > prices.cost_exact:
            return _veto(
                _CODE.INVALID_SIGNAL,
                f"take_profit {take_profit!s} is not above the entry {cost:.10g}",
            )

    size = math.inf
    if fields["quantity"] is not None:
        size = fields["quantity"]
    if fields["size_pct"] is not None:
        size = min(size, fields["size_pct"] * equity / cost)
    if distance < math.inf and source.risk_per_trade_pct is not None:
        by_risk = risk_quantity(equity, source.risk_per_trade_pct, distance)
        if by_risk < size:
            size = by_risk
            adjustments.append(
                _reason(
                    _CODE.RISK_SIZED,
                    f"sized to risk {source.risk_per_trade_pct:.2%} of equity with the stop "
                    f"{distance / cost:.3%} away: {by_risk:.8g}",
                )
            )
    exposure = gross_exposure(portfolio.positions, fields["symbol"], last)
    if exposure is None:
        return _veto(_CODE.INVALID_PORTFOLIO, "a position holds a non-finite size or price")
    position_room = source.max_position_pct * equity - held * last
    if source.scale_by_confidence and fields["confidence"] < 1.0:
        if size == math.inf:
            size = position_room / cost
        size *= fields["confidence"]
        if not size > 0:
            return _veto(_CODE.CONFIDENCE_SCALED, "confidence scales the size to zero")
        adjustments.append(
            _reason(
                _CODE.CONFIDENCE_SCALED,
                f"size scaled by confidence {fields['confidence']:.2f}: {size:.8g}",
            )
        )
    agreement = fields["agreement"]
    if limits.size_by_agreement and agreement is not None and agreement < 1.0:
        if size == math.inf:
            size = position_room / cost
        size *= agreement
        adjustments.append(
            _reason(
                _CODE.AGREEMENT_SCALED,
                f"size scaled by agreement {agreement:.2f} of the model's samples: {size:.8g}",
            )
        )
    cost_exact = prices.cost_exact
    fee = limits.fee_rate
    caps = [
        _tuple_new(
            Cap,
            (
                _CODE.MAX_POSITION,
                position_room,
                cost,
                None,
                cost_exact,
                "max position {:.0%} of equity",
                source.max_position_pct,
            ),
        ),
        _exposure_cap(portfolio, source.max_exposure_pct, exposure, cost, cost_exact),
        _tuple_new(
            Cap,
            (
                _CODE.INSUFFICIENT_CASH,
                cash,
                cost * (1.0 + fee),
                None,
                exact_multiply(cost_exact, limits.fee_factor),
                "free cash {:.2f} (fees included)",
                cash,
            ),
        ),
    ]
    if source.max_order_notional is not None:
        caps.append(
            _tuple_new(
                Cap,
                (
                    _CODE.MAX_ORDER_NOTIONAL,
                    source.max_order_notional,
                    cost,
                    None,
                    cost_exact,
                    "max order notional {:g}",
                    source.max_order_notional,
                ),
            )
        )
    return _finish(
        fields,
        rules,
        now_ms,
        size,
        caps,
        prices,
        _BUY,
        adjustments,
        stop_exact,
        take_profit,
        reduce_only=False,
        trailing_stop_pct=trail,
    )


def _exposure_cap(
    portfolio: PortfolioFacts, pct: float, exposure: float, cost: float, cost_exact: Decimal
) -> Cap:
    """Max exposure of equity; with other venues in the portfolio, of the whole portfolio's
    equity, counting their positions too (all in this account's quote currency)."""
    others = portfolio.elsewhere
    if others is None:
        room, text = pct * portfolio.equity - exposure, "max exposure {:.0%} of equity"
    else:
        room = pct * (portfolio.equity + others.equity) - exposure - others.exposure
        names = ", ".join(others.venues)
        text = f"max exposure {{:.0%}} of the portfolio's equity (this account, {names})"
    return _tuple_new(Cap, (_CODE.MAX_EXPOSURE, room, cost, None, cost_exact, text, pct))


def _trailing(
    fields: dict[str, Any],
    market: MarketFacts,
    rules: Filters,
    source: Plain,
    cost: float,
    adjustments: list[Reason],
) -> Decimal | Vetoed | None:
    """The entry's trailing stop as a fraction below the high: the signal's percent, its ATR
    multiple over the entry price, or the source's default; vetoed when it cannot protect
    (at or below zero, or tighter than one tick)."""
    pct = fields["trailing_stop_pct"]
    if pct is None and fields["trailing_stop_atr"] is not None:
        atr = market.atr
        if atr is None or not _positive(atr):
            return _veto(
                _CODE.TRAILING_STOP,
                f"a trailing stop of {fields['trailing_stop_atr']:g} x ATR needs an ATR; "
                "none is known",
            )
        pct = fields["trailing_stop_atr"] * atr / cost
        adjustments.append(
            _reason(
                _CODE.TRAILING_STOP,
                f"trailing stop {fields['trailing_stop_atr']:g} x ATR {atr:.8g} = {pct:.4%} "
                f"of {cost:.10g}",
            )
        )
    elif pct is None and source.trailing_stop_pct is not None:
        pct = source.trailing_stop_pct
        adjustments.append(
            _reason(
                _CODE.TRAILING_STOP,
                f"no trailing stop given: risk.{fields['source']}.trailing_stop_pct "
                f"{pct:.4%} applies",
            )
        )
    if pct is None:
        return None
    if pct >= 1.0:
        return _veto(
            _CODE.TRAILING_STOP,
            f"a trailing stop {pct:.2%} below the high sits at or below zero; it must be under 100%",
        )
    if pct * cost < rules.tick.step_f:
        return _veto(
            _CODE.TRAILING_STOP,
            f"trailing stop {pct:.6%} of {cost:.10g} is tighter than one tick ({rules.tick_size!s})",
        )
    return exact(pct)


def _entry_blocks(
    fields: dict[str, Any],
    portfolio: PortfolioFacts,
    market: MarketFacts,
    now_ms: int,
    limits: PlainLimits,
    source: Plain,
    state: RiskState,
    waived: list[Reason],
) -> list[Reason]:
    """Every rule that forbids a new entry outright; all are reported, not just the first.
    An unwinding leg takes risk off, as an exit does: the rules that only hold back new risk
    (REDUCING, cooldown, the order rates, the loss breakers) go to `waived` instead."""
    found: list[Reason] = []
    hold_back = waived.append if fields["unwinds"] else found.append
    kept = state.__dict__  # its fields, read once each: a model's attribute read is slower
    locks, last_loss_ms = kept["locks"], kept["last_loss_ms"]
    if locks:
        for lock in locks:
            if lock.level is _REDUCING and lock.active(now_ms):
                hold_back(_reason(lock.code, f"trading is REDUCING (exits only): {lock.message}"))
    if last_loss_ms is not None:  # no loss yet, no cooldown
        cooldown = cooldown_lock(kept["losing_streak"], last_loss_ms, source)
        if cooldown is not None and cooldown.active(now_ms):
            hold_back(_reason(cooldown.code, cooldown.message))
    age = now_ms - market.data_time_ms
    if age > limits.max_data_age_ms:
        found.append(
            _reason(
                _CODE.STALE_DATA,
                f"market data is {age / 1000:.0f} s old; the limit is "
                f"{limits.max_data_age_ms / 1000:.0f} s",
            )
        )
    bid, ask = market.best_bid, market.best_ask
    if bid is not None and ask is not None:
        if not (0.0 < bid < _INF and 0.0 < ask < _INF and ask >= bid):
            found.append(_reason(_CODE.INVALID_MARKET, f"book bid {bid} / ask {ask}"))
        else:
            spread_bps = (ask - bid) / ((ask + bid) / 2.0) * 10_000.0
            if spread_bps > limits.max_spread_bps:
                found.append(
                    _reason(
                        _CODE.WIDE_SPREAD,
                        f"spread {spread_bps:.1f} bps exceeds {limits.max_spread_bps:g} bps",
                    )
                )
    agreement = fields["agreement"]
    if limits.size_by_agreement and agreement is not None and agreement < limits.min_agreement:
        found.append(
            _reason(
                _CODE.LOW_AGREEMENT,
                f"{agreement:.0%} of the model's samples agree; the floor is "
                f"{limits.min_agreement:.0%}",
            )
        )
    if fields["confidence"] < source.min_confidence:
        found.append(
            _reason(
                _CODE.LOW_CONFIDENCE,
                f"confidence {fields['confidence']:.2f} is below {source.min_confidence:.2f}",
            )
        )
    orders = kept["recent_orders_ms"]
    per_minute, per_hour = source.max_orders_per_minute, source.max_orders_per_hour
    if len(orders) >= min(per_minute, per_hour):  # else no window can hold enough of them
        for window, allowed, label in (
            (_MINUTE_MS, per_minute, "minute"),
            (_HOUR_MS, per_hour, "hour"),
        ):
            placed = len(orders) - bisect_right(orders, now_ms - window)
            if placed >= allowed:
                hold_back(
                    _reason(
                        _CODE.RATE_LIMIT,
                        f"{placed} orders in the last {label}; {fields['source']} may "
                        f"place {allowed}",
                    )
                )
    # The portfolio's own day start and peak back up the state machine's breakers. Without a
    # limit the lock functions say None: not asking saves two calls a signal.
    if limits.max_daily_loss_pct is None and limits.max_drawdown_pct is None:
        return found
    equity = portfolio.equity
    for breaker in (
        daily_loss_lock(equity, portfolio.day_start_equity, now_ms, limits),
        drawdown_lock(equity, portfolio.peak_equity, now_ms, limits),
    ):
        if breaker is not None and all(r.code is not breaker.code for r in found + waived):
            hold_back(_reason(breaker.code, breaker.message))
    return found


def _position_rules(
    fields: dict[str, Any],
    portfolio: PortfolioFacts,
    limits: PlainLimits,
    source: Plain,
    held: float,
) -> list[Reason]:
    """No adding to a held long unless the source allows it; no new symbol past the count."""
    if held > 0:
        if source.allow_pyramiding:
            return []
        return [
            _reason(
                _CODE.PYRAMIDING,
                f"{fields['symbol']} is already held ({held:.8g}); {fields['source']} entries "
                f"do not add to a position (risk.{fields['source']}.allow_pyramiding)",
            )
        ]
    cap = limits.max_open_positions
    if cap is None:
        return []
    open_symbols = sorted(s for s, p in portfolio.positions.items() if p.quantity != 0)
    if len(open_symbols) < cap:
        return []
    return [
        _reason(
            _CODE.MAX_OPEN_POSITIONS,
            f"{len(open_symbols)} positions open ({', '.join(open_symbols)}); the limit is {cap}",
        )
    ]


def _exit(
    fields: dict[str, Any],
    portfolio: PortfolioFacts,
    last: float,
    rules: Filters,
    now_ms: int,
    limits: PlainLimits,
    held: float,
    side: Side,
) -> Verdict:
    """Reducing a held position: allowed in REDUCING and cooldown, capped at what is held.
    It reads the signal's fields from its `__dict__`."""
    adjustments: list[Reason] = []
    prices = _prices(fields, side, last, rules, adjustments)
    if prices.ref <= _ZERO:
        return _veto(_CODE.TICK_SIZE, f"price rounds to zero at tickSize {rules.tick_size!s}")
    held_size = abs(held)
    size = held_size
    action, quantity, size_pct = fields["action"], fields["quantity"], fields["size_pct"]
    if action is not _CLOSE:
        asked = math.inf
        if quantity is not None:
            asked = quantity
        if size_pct is not None:
            if not _positive(portfolio.equity):
                return _veto(
                    _CODE.INVALID_PORTFOLIO,
                    f"size_pct needs a positive equity, got {portfolio.equity}",
                )
            asked = min(asked, size_pct * portfolio.equity / prices.cost)
        if asked < held_size:
            size = asked
        elif asked > held_size and asked != math.inf:
            adjustments.append(
                _reason(
                    _CODE.REDUCE_ONLY,
                    f"asked {asked:.8g} but an exit is capped at the held {held_size:.8g}",
                )
            )
    caps: list[Cap] = []
    if side is _BUY:  # covering a short spends cash
        fee = limits.fee_rate
        caps.append(
            _tuple_new(
                Cap,
                (
                    _CODE.INSUFFICIENT_CASH,
                    portfolio.cash,
                    prices.cost * (1.0 + fee),
                    None,
                    exact_multiply(prices.cost_exact, limits.fee_factor),
                    "free cash {:.2f} (fees included)",
                    portfolio.cash,
                ),
            )
        )
    return _finish(
        fields, rules, now_ms, size, caps, prices, side, adjustments, None, None, reduce_only=True
    )


def _finish(
    fields: dict[str, Any],
    rules: Filters,
    now_ms: int,
    size: float,
    caps: list[Cap],
    prices: _Prices,
    side: Side,
    adjustments: list[Reason],
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    *,
    reduce_only: bool,
    trailing_stop_pct: Decimal | None = None,
) -> Verdict:
    """Exchange filters, rounding down to stepSize, the minimums, then the sealed order."""
    caps.append(rules.max_qty_cap)
    ceiling = rules.max_notional_f
    if ceiling is not None and not out_of_reach(ceiling, prices.ref_f, size):
        caps.append(
            _tuple_new(
                Cap,
                (
                    _CODE.MAX_ORDER_NOTIONAL,
                    rules.max_notional_f,
                    prices.ref_f,
                    rules.max_notional,
                    prices.ref,
                    "exchange maxNotional {!s}",
                    rules.max_notional,
                ),
            )
        )
    fitted = fit(size, caps, rules.step)
    if isinstance(fitted, NoRoom):
        return _veto(fitted.cap.code, f"no room left under {fitted.cap.describe()}")
    quantity = fitted.quantity
    for cap, room in fitted.binding:
        adjustments.append(_reason(cap.code, f"capped at {room:.8g} by {cap.describe()}"))
    if fitted.rounded:  # most entries: joined, as compiled a `!s` in an f-string is a format call
        text = "rounded down to stepSize " + str(rules.step_size) + ": " + str(quantity)
        adjustments.append(_reason(_CODE.STEP_SIZE, text))
    if quantity <= _ZERO:
        return _veto(
            _CODE.MIN_QTY,
            f"size {fitted.before:.8g} rounds down to nothing at stepSize {rules.step_size!s}",
        )
    if quantity < rules.min_qty:
        return _veto(_CODE.MIN_QTY, f"quantity {quantity!s} is below minQty {rules.min_qty!s}")
    notional = exact_multiply(quantity, prices.ref)
    if notional < rules.min_notional:
        return _veto(
            _CODE.MIN_NOTIONAL,
            f"notional {notional:.8f} at {prices.ref!s} is below minNotional {rules.min_notional!s}",
        )
    decision_id, symbol = fields["decision_id"], fields["symbol"]
    order_type, source = fields["order_type"], fields["source"]
    order = _MINT.seal(
        client_order_id(decision_id),
        decision_id,
        symbol,
        side,
        order_type,
        quantity,
        prices.limit,
        prices.stop,
        stop_loss,
        take_profit,
        trailing_stop_pct,
        reduce_only,
        source,
        now_ms,
    )
    return trusted(Approved, {"kind": "approved", "order": order, "adjustments": adjustments})
