"""The built-in offline model: deterministic rules behind the same interface as the LLM client.
It emits real tool calls and reads their real results, so the whole graph runs with no key."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from agent.llm import LLMMessage, LLMResponse, LLMStats, ToolCall, Usage, request_fingerprint

OFFLINE_MODEL = "offline"
OFFLINE_BASE_URL = "offline://rules"
DECISION_MARKER = "Decision time:"
_SYMBOL_IN_PROMPT = re.compile(r"Symbol: ([A-Z0-9]+)")
_COIN = re.compile(r"\b([A-Z]{2,10}USDT|BTC|ETH|BITCOIN|ETHER(?:EUM)?)\b", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_ALIASES = {"BTC": "BTCUSDT", "BITCOIN": "BTCUSDT", "ETH": "ETHUSDT", "ETHER": "ETHUSDT"}
# Multiples of the 1m ATR: about 2 and 3 ATRs of 15m bars, the default decision cadence.
STOP_ATR, TARGET_ATR = 8.0, 12.0
ENTRY_SIZE = 0.25


class OfflineModel:
    """Rules over the snapshot's trend flags: buy an aligned uptrend with an ATR stop, close on a
    downtrend or overbought RSI, otherwise hold. No network, no cost, same answer every time."""

    model = OFFLINE_MODEL
    base_url = OFFLINE_BASE_URL

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
    ) -> str:
        return request_fingerprint(
            OFFLINE_BASE_URL, OFFLINE_MODEL, messages, tools, 0.0, prompt_version
        )

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        prompt_version: str,
    ) -> LLMResponse:
        offered = {t["function"]["name"] for t in tools or []}
        turn = _Turn(messages)
        message = _decide(turn, offered) if turn.is_decision else _chat(turn, offered)
        with self._lock:
            self._stats.calls += 1
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

    def call(self, name: str, arguments: dict[str, Any]) -> LLMMessage:
        """One tool call with an id unique within the turn (and the same on every run)."""
        return LLMMessage(
            tool_calls=[
                ToolCall(
                    id=f"call_offline_{self.calls + 1}",
                    name=name,
                    arguments=json.dumps(arguments, separators=(",", ":")),
                )
            ]
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
        self.atr = float(atr) if atr else self.price * 0.005
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
        decimals = 2 if self.price >= 1 else 6
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
        return f"{self.up_votes}/3 trend flags up, {rsi}, ATR {self.atr:.4g}, last {self.price:g}"


def _decide(turn: _Turn, offered: set[str]) -> LLMMessage:
    symbol = turn.symbol()
    if "submit_signal" in turn.results:
        return _say(f"Signal for {symbol} submitted.")
    snapshot = turn.results.get("get_market_snapshot")
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


def _chat(turn: _Turn, offered: set[str]) -> LLMMessage:
    """Keyword intents: backtest, portfolio, buy/sell/close (a proposal), else an analysis."""
    text, symbol = turn.text.lower(), turn.symbol()
    if "backtest" in text and "run_backtest" in offered:
        return _chat_backtest(turn, symbol)
    if ("portfolio" in text or "position" in text) and "get_portfolio" in offered:
        result = turn.results.get("get_portfolio")
        if result is None:
            return turn.call("get_portfolio", {})
        held = ", ".join(f"{s} {p['quantity']:g}" for s, p in result["positions"].items())
        return _say(
            f"Equity {result['equity_usdt']:,.2f} USDT, cash {result['cash_usdt']:,.2f} USDT; "
            f"holding {held or 'nothing'}; trading state {result['trading_state']}."
        )
    snapshot = turn.results.get("get_market_snapshot")
    if snapshot is None:
        if "get_market_snapshot" in turn.errors:
            return _say(f"I could not read the market: {turn.errors['get_market_snapshot']}")
        return turn.call("get_market_snapshot", {"symbol": symbol})
    view = _View(snapshot)
    side = next((w for w in ("buy", "sell", "close") if re.search(rf"\b{w}\b", text)), None)
    if side is None or "place_order" not in offered:
        advice = {"buy": "leans long", "close": "leans to exit", "hold": "is mixed"}[view.action]
        return _say(
            f"{view.summary()}. The picture {advice}. Ask me to buy or sell to propose one."
        )
    proposal = turn.results.get("place_order")
    if proposal is None:
        if "place_order" in turn.errors:
            return _say(f"I could not propose that order: {turn.errors['place_order']}")
        return turn.call("place_order", _chat_order(view, symbol, side, text))
    preview = proposal.get("risk_preview", {})
    if preview.get("verdict") == "vetoed":
        return _say(f"The risk gate would veto it: {'; '.join(preview.get('notes', []))}")
    return _say(
        f"Proposed: {preview.get('side')} {preview.get('quantity')} {symbol} "
        f"(~{preview.get('notional_usdt')} USDT). It waits for your approval."
    )


def _chat_order(view: _View, symbol: str, side: str, text: str) -> dict[str, Any]:
    if side != "buy":
        return {"symbol": symbol, "action": side, "confidence": 0.8, "rationale": "user request"}
    percent = _PERCENT.search(text)
    size = min(1.0, float(percent.group(1)) / 100) if percent else 0.1
    return {**view.entry(symbol, size), "confidence": 0.8, "rationale": "user request"}


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
