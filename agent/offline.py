"""The built-in offline model: deterministic rules behind the same interface as the LLM client.
It emits real tool calls and reads their real results, so the whole graph runs with no key."""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any

from agent.briefing import read_snapshot
from agent.in_flight import Turns
from agent.llm import (
    FREE,
    LLMMessage,
    LLMResponse,
    LLMStats,
    ToolCall,
    Usage,
    request_fingerprint,
)

OFFLINE_MODEL = "offline"
OFFLINE_BASE_URL = "offline://rules"
DECISION_MARKER = "Decision time:"
_SYMBOL_IN_PROMPT = re.compile(r"Symbol: ([A-Z0-9]+)")
_COIN = re.compile(r"\b([A-Z]{2,10}USDT|BTC|ETH|BITCOIN|ETHER(?:EUM)?)\b", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_ALIASES = {"BTC": "BTCUSDT", "BITCOIN": "BTCUSDT", "ETH": "ETHUSDT", "ETHER": "ETHUSDT"}
# Multiples of the 1m ATR: about 2 and 3 ATRs of 15m bars, the default decision cadence.
STOP_ATR, TARGET_ATR = 8.0, 12.0
FALLBACK_ATR = 0.005  # of the price, where the snapshot has no ATR
ENTRY_SIZE = 0.25


class OfflineModel:
    """Rules over the snapshot's trend flags: buy an aligned uptrend with an ATR stop, close on a
    downtrend or overbought RSI, otherwise hold. No network, no cost, same answer every time."""

    model = OFFLINE_MODEL
    base_url = OFFLINE_BASE_URL
    decision_format = "tools"  # it always answers with real tool calls
    pricing = FREE  # nothing leaves the machine

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = LLMStats()

    @property
    def stats(self) -> LLMStats:
        with self._lock:
            return self._stats.model_copy(deep=True)

    def cache_key(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        prompt_version: str,
        options: dict[str, Any] | None = None,
    ) -> str:
        return request_fingerprint(
            OFFLINE_BASE_URL, OFFLINE_MODEL, messages, tools, 0.0, prompt_version, options
        )

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        prompt_version: str,
        options: dict[str, Any] | None = None,
        turns: Turns | None = None,  # it sends nothing, so it never waits for a turn
    ) -> LLMResponse:
        offered = {t["function"]["name"] for t in tools or []}
        turn = _Turn(messages)
        message = _decide(turn, offered) if turn.is_decision else _chat(turn, offered)
        with self._lock:
            self._stats.calls += 1
            self._stats.answered += 1
            self._stats.latencies_ms.append(0.0)
        return LLMResponse(
            message=message,
            finish_reason="tool_calls" if message.tool_calls else "stop",
            usage=Usage(),
            model=OFFLINE_MODEL,
            cached=False,
            latency_ms=0.0,
            cost_usd=0.0,
        )

    def for_run(self) -> OfflineModel:
        """A model whose stats are one run's alone, as `LLMClient.for_run`."""
        return OfflineModel()

    def open(self) -> None:
        """Nothing to open; here so callers treat every model alike."""

    def close(self) -> None:
        """Nothing to release; here so callers treat every model alike."""


class _Turn:
    """The conversation since the last user message: its text and the tool results so far."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        self.text = str(messages[start].get("content") or "") if start >= 0 else ""
        self.is_decision = DECISION_MARKER in self.text
        names: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.calls = 0
        for message in messages[start + 1 :]:
            for call in message.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
                self.calls += 1
            if message.get("role") == "tool":
                name = names.get(message.get("tool_call_id", ""), "")
                payload = _json(message.get("content"))
                if isinstance(payload, dict) and "error" in payload:
                    self.errors[name] = str(payload["error"])
                else:
                    self.results[name] = payload

    def symbol(self) -> str:
        found = _SYMBOL_IN_PROMPT.search(self.text)
        if found:
            return found.group(1)
        coin = _COIN.search(self.text)
        if coin is None:
            return "BTCUSDT"
        word = coin.group(1).upper()
        return _ALIASES.get(word, _ALIASES.get(word[:5], word))

    def call(self, name: str, arguments: dict[str, Any], content: str | None = None) -> LLMMessage:
        """One tool call with an id unique within the turn (and the same on every run)."""
        return LLMMessage(
            content=content,
            tool_calls=[
                ToolCall(
                    id=f"call_offline_{self.calls + 1}",
                    name=name,
                    arguments=json.dumps(arguments, separators=(",", ":")),
                )
            ],
        )


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return None


def _say(text: str) -> LLMMessage:
    return LLMMessage(content=text)


class _View:
    """The offline model's reading of a snapshot: which way the flags point, and how strongly."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.symbol = snapshot["symbol"]
        self.price = float(snapshot["last_price"])
        indicators = snapshot.get("indicators", {})
        atr = next((v for k, v in indicators.items() if k.startswith("atr_")), None)
        self.measured_atr = bool(atr)  # else no range to measure (flat bars, too few of them)
        self.atr = float(atr) if atr else self.price * FALLBACK_ATR
        self.rsi = next((v for k, v in indicators.items() if k.startswith("rsi_")), None)
        trend = snapshot.get("trend", {})
        ups = [
            trend.get("sma_fast_above_slow"),
            trend.get("macd_above_signal"),
            trend.get("price_above_sma_slow"),
        ]
        self.up_votes = sum(v is True for v in ups)
        self.down_votes = sum(v is False for v in ups)
        self.overbought = trend.get("rsi_overbought") is True

    @property
    def action(self) -> str:
        if self.overbought or self.down_votes == 3:
            return "close"
        if self.up_votes == 3:
            return "buy"
        return "hold"

    @property
    def confidence(self) -> float:
        return 0.7 if self.action == "buy" else 0.6

    def entry(self, symbol: str, size_pct: float = ENTRY_SIZE) -> dict[str, Any]:
        # cents for a price of 1 or more; below, 4 significant digits (a 1e-8 coin's stop
        # rounded to 6 decimals was 0)
        decimals = 2 if self.price >= 1 else 3 - math.floor(math.log10(self.price))
        return {
            "symbol": symbol,
            "action": "buy",
            "size_pct": size_pct,
            "stop_loss": round(self.price - STOP_ATR * self.atr, decimals),
            "take_profit": round(self.price + TARGET_ATR * self.atr, decimals),
            "confidence": self.confidence,
        }

    def summary(self) -> str:
        rsi = f"RSI {self.rsi:.1f}" if isinstance(self.rsi, int | float) else "RSI n/a"
        atr = f"ATR {self.atr:.4g}" if self.measured_atr else f"ATR n/a, {FALLBACK_ATR:.1%} assumed"
        return f"{self.up_votes}/3 trend flags up, {rsi}, {atr}, last {self.price:g}"


def _decide(turn: _Turn, offered: set[str]) -> LLMMessage:
    symbol = turn.symbol()
    if "submit_signal" in turn.results:
        return _say(f"Signal for {symbol} submitted.")
    snapshot = turn.results.get("get_market_snapshot") or read_snapshot(turn.text)
    if snapshot is None:
        if "get_market_snapshot" in turn.errors:
            reason = turn.errors["get_market_snapshot"]
            return turn.call("submit_signal", _hold(symbol, f"no market data: {reason}"))
        return turn.call("get_market_snapshot", {"symbol": symbol})
    view = _View(snapshot)
    rationale = view.summary()
    if view.action == "close":
        why = "RSI overbought" if view.overbought else "trend turned down"
        signal = {"symbol": symbol, "action": "close", "confidence": view.confidence}
        return turn.call("submit_signal", {**signal, "rationale": f"{rationale}; {why}"})
    if view.action == "hold":
        return turn.call("submit_signal", _hold(symbol, f"{rationale}; no aligned trend"))
    entry = view.entry(symbol)
    check = turn.results.get("assess_risk")
    if check is None and "assess_risk" in offered and "assess_risk" not in turn.errors:
        return turn.call("assess_risk", entry)
    if check is not None and check.get("verdict") == "vetoed":
        notes = "; ".join(check.get("notes", []))[:300]
        return turn.call(
            "submit_signal", _hold(symbol, f"{rationale}; the gate would veto: {notes}")
        )
    return turn.call("submit_signal", {**entry, "rationale": f"{rationale}; aligned uptrend"})


def _hold(symbol: str, rationale: str) -> dict[str, Any]:
    return {"symbol": symbol, "action": "hold", "confidence": 0.5, "rationale": rationale[:600]}


CAN_DO = (
    "I can: analyse a symbol (`analyse BTC`), show its indicators and propose a trade "
    "(`show BTC indicators and propose a trade`), buy or sell N % or N USDT (`buy 10% BTC`, "
    "`buy 200 USDT of ETH`), close a position (`close BTC`), show the portfolio with its PnL "
    "and open orders (`portfolio`), cancel an order (`cancel <client order id>`), show the limits "
    "in force (`what are my limits`), the autonomous loop's status (`how is the loop doing`) "
    "and run a backtest (`backtest sma on BTC`)."
)
_USDT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:usdt|usd|\$)", re.IGNORECASE)
_ORDER_ID = re.compile(r"\bcancel\s+(?:order\s+)?([A-Za-z0-9_-]{6,36})")
_LIMITS = re.compile(r"\blimits\b|\brisk (?:limits?|rules)\b|\bmy limit\b", re.IGNORECASE)
_LOOP = re.compile(r"\bloop\b|\bstatus\b|\bbot\b", re.IGNORECASE)
_LOOP_ACCOUNT = re.compile(r"\baccount\s+`?([A-Za-z0-9_.-]{1,64})")
_ANALYSE = ("analy", "indicator", "show", "view", "look", "chart", "price", "market", "trend")
_PROPOSE = ("propose", "trade", "suggest", "idea", "should i")


def _chat(turn: _Turn, offered: set[str]) -> LLMMessage:
    """Keyword intents: backtest, cancel, limits, the loop's status, portfolio, buy/sell/close
    or a proposal on request, an analysis; anything else gets the list of what it can do."""
    text, symbol = turn.text.lower(), turn.symbol()
    if "backtest" in text and "run_backtest" in offered:
        return _chat_backtest(turn, symbol)
    cancel = _ORDER_ID.search(turn.text)
    if cancel and "cancel_order" in offered:
        return _chat_cancel(turn, cancel.group(1))
    if _LIMITS.search(text) and "get_limits" in offered:
        return _chat_limits(turn)
    if _LOOP.search(text) and "get_loop_status" in offered:
        return _chat_loop(turn)
    side = next((w for w in ("buy", "sell", "close") if re.search(rf"\b{w}\b", text)), None)
    propose = side is not None or any(w in text for w in _PROPOSE)
    wants_book = any(w in text for w in ("portfolio", "position", "pnl", "holding", "balance"))
    if wants_book and not propose and "get_portfolio" in offered:
        return _chat_portfolio(turn)
    analyse, proposed = any(w in text for w in _ANALYSE), side is None
    if not (propose or analyse or _COIN.search(turn.text)):
        return _say(CAN_DO)
    snapshot = turn.results.get("get_market_snapshot")
    if snapshot is None:
        if "get_market_snapshot" in turn.errors:
            return _say(f"I could not read the market: {turn.errors['get_market_snapshot']}")
        return turn.call("get_market_snapshot", {"symbol": symbol})
    view = _View(snapshot)
    table = indicator_table(snapshot)
    if not propose or "place_order" not in offered:  # an analysis
        advice = {"buy": "leans long", "close": "leans to exit", "hold": "is mixed"}[view.action]
        return _say(
            f"{table}\n\n{view.summary()}. The picture {advice}. "
            "Ask me to buy or sell, or to propose a trade."
        )
    if "place_order" in turn.errors:
        return _say(f"I could not propose that order: {turn.errors['place_order']}")
    if side is None:
        book = turn.results.get("get_portfolio")
        if book is None and "get_portfolio" in offered and "get_portfolio" not in turn.errors:
            return turn.call("get_portfolio", {})
        side = _proposed_side(view, symbol, book or {})
        if side is None:
            return _say(
                f"{table}\n\n{view.summary()}: no trade proposed. The flags are mixed, or they "
                f"point down and you hold no {symbol} to sell (spot is long-only)."
            )
    order = _chat_order(view, symbol, side, turn.text)
    what = f"{side} {symbol}" + (f" ({order['rationale']})" if side == "buy" else "")
    shown = f"{table}\n\n" if analyse or proposed else ""
    return turn.call("place_order", order, content=f"{shown}{view.summary()}. Proposing: {what}.")


def indicator_table(snapshot: dict[str, Any]) -> str:
    """The snapshot as a table a trader reads at a glance, with what each figure says."""
    values, trend = snapshot.get("indicators", {}), snapshot.get("trend", {})
    rows = [
        ("last price", snapshot.get("last_price"), f"as of {snapshot.get('as_of', '')[:16]} UTC"),
        *[
            (f"return {k}", None if v is None else f"{v:+.3f}%", "")
            for k, v in snapshot.get("returns_pct", {}).items()
        ],
        ("realised vol", snapshot.get("realized_vol_pct"), "% annualised"),
    ]
    smas = [k for k in values if k.startswith("sma_")]
    readings = {
        "macd": "above signal" if trend.get("macd_above_signal") else "below signal",
        "bb_pct": "where the close sits in the Bollinger band (0 lower, 1 upper)",
        "volume_z": "volume against its recent mean, in standard deviations",
    }
    if smas:
        readings[smas[0]] = (
            "fast above slow" if trend.get("sma_fast_above_slow") else "fast below slow"
        )
    for name, value in values.items():
        reading = readings.get(name, "")
        if name.startswith("rsi_"):
            reading = _rsi_reading(value)
        elif name.startswith("atr_"):
            reading = "average true range, in price"
        rows.append((name, value, reading))
    lines = [
        f"**{snapshot.get('symbol')} {snapshot.get('interval')}**",
        "",
        "| indicator | value | reading |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {_figure(v)} | {r} |" for n, v, r in rows]
    return "\n".join(lines)


def _figure(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def _rsi_reading(rsi: float | None) -> str:
    if rsi is None:
        return ""
    return "overbought (>70)" if rsi > 70 else "oversold (<30)" if rsi < 30 else "neutral (30-70)"


def _proposed_side(view: _View, symbol: str, book: dict[str, Any]) -> str | None:
    """A trade on request: buy when most flags point up; close a held position when they
    turn down; otherwise nothing."""
    held = symbol in (book.get("positions") or {})
    if view.up_votes >= 2 and not view.overbought:
        return "buy"
    if held and (view.down_votes >= 2 or view.overbought):
        return "close"
    return None


def _chat_portfolio(turn: _Turn) -> LLMMessage:
    result = turn.results.get("get_portfolio")
    if result is None:
        return turn.call("get_portfolio", {})
    held = ", ".join(
        f"{s} {p['quantity']:g} ({p['value_usdt']:,.2f} USDT)"
        for s, p in result["positions"].items()
    )
    line = (
        f"Equity {result['equity_usdt']:,.2f} USDT, cash {result['cash_usdt']:,.2f} USDT; "
        f"holding {held or 'nothing'}; trading state {result['trading_state']}."
    )
    account = result.get("account")
    if account:
        orders = ", ".join(
            f"{o['side']} {o['quantity']} {o['symbol']} `{o['client_order_id']}` ({o['status']})"
            for o in account["open_orders"]
        )
        line += (
            f" Realised PnL {account['realised_pnl_usdt']:+,.2f} USDT, unrealised "
            f"{account['unrealised_pnl_usdt']:+,.2f}, fees {account['fees_usdt']:,.2f}; "
            f"open orders: {orders or 'none'}."
        )
    return _say(line)


def _chat_limits(turn: _Turn) -> LLMMessage:
    result = turn.results.get("get_limits")
    if result is None:
        if "get_limits" in turn.errors:
            return _say(f"I could not read the limits: {turn.errors['get_limits']}")
        return turn.call("get_limits", {})
    used = "; ".join(
        f"{u['name']} {u['used']:g}{'%' if u['unit'] == '%' else ''} of "
        + ("no limit" if u.get("limit") is None else f"{u['limit']:g}{_unit(u['unit'])}")
        for u in result["usage"]
    )
    locks = "; ".join(result["locks"]) or "no locks"
    lines = "\n".join(f"- {line}" for line in result["limits_in_force"])
    return _say(
        f"Limits in force on this account ({result['source']} orders):\n{lines}\n\n"
        f"Used so far: {used}. Trading state {result['trading_state']}; {locks}."
    )


def _unit(unit: str) -> str:
    return "%" if unit == "%" else f" {unit}"


def _chat_loop(turn: _Turn) -> LLMMessage:
    result = turn.results.get("get_loop_status")
    if result is None:
        if "get_loop_status" in turn.errors:
            return _say(f"I could not read the loop: {turn.errors['get_loop_status']}")
        named = _LOOP_ACCOUNT.search(turn.text)
        return turn.call("get_loop_status", {"account": named.group(1)} if named else {})
    stop = f" ({result['stop_reason']})" if result.get("stop_reason") else ""
    held = ", ".join(
        f"{p['symbol']} {p['quantity']:g} ({p['value_usdt']:,.2f} USDT)"
        for p in result["positions"]
    )
    vetoes = ", ".join(f"{code} ×{n}" for code, n in result["vetoes"].items()) or "none"
    locks = "; ".join(result["locks"]) or "no locks"
    last = result.get("last_decision") or {}
    decided = f"{last['time']} {last['symbol']} {last['outcome']}" if last else "none yet"
    others = result["other_accounts"]
    return _say(
        f"Loop `{result['account']}` ({result['mode']}): {result['status']}{stop}; trading "
        f"state {result['trading_state']} ({locks}); last bar {result.get('last_bar') or 'none'}"
        f" UTC after {result['bars']:,} bars. Equity {result['equity_usdt']:,.2f} USDT, PnL "
        f"{result['pnl_usdt']:+,.2f} ({result['pnl_pct']:+.3f}%); holding {held or 'nothing'};"
        f" {result['fills']} fills, {result['decisions']} decisions, last {decided}; vetoes: "
        f"{vetoes}; last error: {result.get('last_error') or 'none'}."
        + (f" Other loops: {', '.join(others)}." if others else "")
    )


def _chat_cancel(turn: _Turn, order_id: str) -> LLMMessage:
    result = turn.results.get("cancel_order")
    if result is None:
        if "cancel_order" in turn.errors:
            return _say(f"I could not cancel {order_id}: {turn.errors['cancel_order']}")
        return turn.call("cancel_order", {"client_order_id": order_id})
    return _say(f"Cancel {order_id}: {result['result']}.")


def _chat_order(view: _View, symbol: str, side: str, text: str) -> dict[str, Any]:
    """The trader's own size: N % of equity or N USDT (10 % when unsaid), at full confidence,
    since a person asked for it; a buy carries the ATR stop and target."""
    if side != "buy":
        return {"symbol": symbol, "action": side, "confidence": 1.0, "rationale": "user request"}
    usdt, percent = _USDT.search(text), _PERCENT.search(text)
    if usdt and not percent:
        quantity = round(float(usdt.group(1)) / view.price, 8)
        order = {**view.entry(symbol), "confidence": 1.0, "rationale": f"{usdt.group(1)} USDT"}
        del order["size_pct"]
        return {**order, "quantity": quantity}
    size = min(1.0, float(percent.group(1)) / 100) if percent else 0.1
    return {**view.entry(symbol, size), "confidence": 1.0, "rationale": f"{size:.0%} of equity"}


def _chat_backtest(turn: _Turn, symbol: str) -> LLMMessage:
    result = turn.results.get("run_backtest")
    if result is None:
        if "run_backtest" in turn.errors:
            return _say(f"The backtest did not run: {turn.errors['run_backtest']}")
        text = turn.text.lower()
        strategy = next(
            (s for s in ("rsi_reversion", "donchian_breakout") if s.split("_")[0] in text),
            "sma_cross",
        )
        return turn.call("run_backtest", {"strategy": strategy, "symbol": symbol, "days": 1})
    metrics = result["metrics"]
    return _say(
        f"{result['strategy']} on {symbol} ({result['start']} → {result['end']}): return "
        f"{metrics['Return [%]']}% vs buy & hold {metrics['Buy & Hold Return [%]']}%, "
        f"max drawdown {metrics['Max. Drawdown [%]']}%, {metrics['# Trades']:.0f} trades."
    )
