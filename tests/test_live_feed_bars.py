"""`agent-trade --feed binance` against a loopback Binance near now: a bar no market could print
(prices of 0, NaN over REST), one stamped in the future, a restart after kill -9 and a clock
that runs ahead of the exchange's never make the paper account trade on what did not happen;
`--feed bybit` on a clock behind Bybit's still trades on the bars Bybit has closed."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from account_record import query
from conftest import BIN, stop
from loopback_bybit import LiveBybit, kline_message
from loopback_live_binance import MINUTE, KlineSocket, LiveBinance, last_closed_minute

from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient
from market.binance_ws import Bar, BarRefused, BinanceStream, StreamEvent
from market.models import iso_ms

STRATEGY = ("--strategy", "sma_cross", "--fast", "2", "--slow", "3", "--size", "50")
RUN = ("--symbol", "BTCUSDT", "--account", "a", *STRATEGY)


def falling_then_rising(turn: int) -> Any:
    """0.05 % a minute down into `turn`, then 1 % a minute up: sma_cross 2/3 buys at the bar
    opening at `turn` and holds from the next open."""

    def price(t: int) -> float:
        minutes = (t - turn) / MINUTE
        return round(60_000 * (1 - 0.0005 * minutes if minutes <= 0 else 1 + 0.01 * minutes), 2)

    return price


@pytest.fixture
def socket() -> Iterator[KlineSocket]:
    ws = KlineSocket()
    yield ws
    ws.stop()


def _env(offline_env: dict[str, str], rest: LiveBinance, ws: KlineSocket) -> dict[str, str]:
    # the bars are minutes old when stepped: the gate's freshness rule is not under test here
    return {
        **offline_env,
        "AGENT_BINANCE__BASE_URL": rest.base_url,
        "AGENT_BINANCE__STREAM_URL": ws.url,
        "AGENT_BINANCE__MAX_RETRIES": "2",
        "AGENT_RISK__MAX_DATA_AGE_MS": "3600000",
    }


def _db(env: dict[str, str]) -> Path:
    return Path(env["AGENT_DATA_DIR"]) / "agent.db"


def _start(env: dict[str, str], log: Path, *args: str, feed: str = "binance") -> subprocess.Popen:
    """agent-trade on the loopback feed; its stderr (the log) goes to `log`."""
    command = [str(BIN / "agent-trade"), "--feed", feed, *RUN, *args]
    return subprocess.Popen(command, env=env, stderr=log.open("w"))


def _committed(env: dict[str, str]) -> int | None:
    """The open time of the account's last committed bar."""
    if not _db(env).exists():
        return None
    try:
        rows = query(_db(env), "SELECT state_json FROM trading_loops")
    except Exception:  # the schema is still being made
        return None
    return json.loads(rows[0][0])["paper"]["last_open_time"] if rows else None


def _wait_for(env: dict[str, str], open_time: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90  # a guard against a hang, not a timing
    while (_committed(env) or 0) < open_time:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def _status(env: dict[str, str]) -> dict[str, Any]:
    shown = subprocess.run(
        [str(BIN / "agent-trade"), "status", "--account", "a", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


@pytest.mark.slow
def test_bars_no_market_could_print_are_refused_counted_and_never_filled(
    offline_env, socket, tmp_path
) -> None:
    last = last_closed_minute()
    turn = last - 7 * MINUTE
    rest = LiveBinance(falling_then_rising(turn)).start()
    rest.horizon_ms = turn  # the day loaded at start ends before the streamed bars
    zero, nan = turn + 3 * MINUTE, turn + 5 * MINUTE
    rest.overrides[nan] = {k: "NaN" for k in "ohlc"}  # the backfill's row for the skipped minute
    env = _env(offline_env, rest, socket)
    log = tmp_path / "stderr.txt"
    proc = _start(env, log, "--stop-loss", "3")
    try:
        socket.wait_connected()
        rest.horizon_ms = None
        for t in range(turn, last + 1, MINUTE):
            if t == zero:  # a closed kline of zeros while the long position is open
                socket.send(rest.kline_message(t, **dict.fromkeys("ohlcv", "0")))
            elif t != nan:
                socket.send(rest.kline_message(t))
        _wait_for(env, last, proc, log)
    finally:
        code = stop(proc, signal.SIGTERM)
        rest.stop()
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-3000:]
    db = _db(env)
    fills = query(db, "SELECT side, price, reason FROM paper_fills ORDER BY seq")
    assert len(fills) == 1 and fills[0][1] > 0  # bought, and never stopped out at a price of 0
    equity = [e for (e,) in query(db, "SELECT equity FROM equity_points")]
    assert min(equity) > 9_500
    candles = query(db, "SELECT open_time, open, low FROM candles ORDER BY open_time")
    assert all(o > 0 and low > 0 and not math.isnan(low) for _, o, low in candles)
    assert nan not in [t for t, _, _ in candles]
    shown = _status(env)
    assert shown["stop_reason"] == "stop requested"
    assert shown["feed"]["refused_bars"] == 2
    assert "refused (column" in shown["last_error"]


def test_a_bar_not_closed_by_the_exchanges_clock_is_refused_and_its_final_bar_kept(
    socket,
) -> None:
    """A kline flagged closed 52 s before its minute ends (at a price 3 % off) and one stamped
    ten days ahead are refused; the bars after them, and the final bar of that minute once the
    clock has passed its close, are delivered."""
    base = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE
    rest = LiveBinance(falling_then_rising(base)).start()
    rest.stop()  # only its wire layout is used
    forming = base + 2 * MINUTE
    clock = [forming + 8_000]
    spiked = rest.price(forming + MINUTE) * 1.03

    async def run() -> tuple[list[StreamEvent], BinanceStream]:
        stream = BinanceStream(["btcusdt@kline_1m"], base_url=socket.url, clock_ms=lambda: clock[0])
        events: list[StreamEvent] = []
        async with stream:
            first = [
                rest.kline_message(base),
                rest.kline_message(base + 10 * 1_440 * MINUTE),
                rest.kline_message(base + MINUTE),
                rest.kline_message(forming, c=spiked, h=spiked),
            ]
            sending = asyncio.create_task(asyncio.to_thread(_send_when_open, socket, first))
            async for event in stream:
                events.append(event)
                if isinstance(event, BarRefused) and event.open_time == forming:
                    clock[0] = forming + MINUTE + 1_000  # the minute is over
                    await asyncio.to_thread(socket.send, rest.kline_message(forming))
                if isinstance(event, Bar) and event.open_time == forming:
                    await sending
                    return events, stream
        raise AssertionError("the stream ended")

    events, stream = asyncio.run(asyncio.wait_for(run(), 60))
    bars = [e for e in events if isinstance(e, Bar)]
    assert [b.open_time for b in bars] == [base, base + MINUTE, forming]
    assert bars[-1].close == rest.price(forming + MINUTE)  # the final bar, not the early one
    refused = [e for e in events if isinstance(e, BarRefused)]
    assert [r.open_time for r in refused] == [base + 10 * 1_440 * MINUTE, forming]
    assert "52 s from now" in refused[1].reason
    assert stream.stats.refused_bars == 2


def _send_when_open(socket: KlineSocket, messages: list[str]) -> None:
    socket.wait_connected()
    socket.send(*messages)


@pytest.mark.slow
def test_a_bar_stamped_in_the_future_is_refused_and_the_account_resumes_after_real_bars(
    offline_env, socket, tmp_path
) -> None:
    last = last_closed_minute()
    turn = last - 4 * MINUTE
    rest = LiveBinance(falling_then_rising(turn)).start()
    rest.horizon_ms = turn
    env = _env(offline_env, rest, socket)
    log = tmp_path / "stderr.txt"
    proc = _start(env, log)
    future = last + 10 * 1_440 * MINUTE
    try:
        socket.wait_connected()
        for t in range(turn, last + 1, MINUTE):
            socket.send(rest.kline_message(t))
            if t == turn + MINUTE:
                socket.send(rest.kline_message(future))
        _wait_for(env, last, proc, log)
    finally:
        code = stop(proc, signal.SIGTERM)
        rest.stop()
    assert code == 0, log.read_text()[-3000:]
    assert _committed(env) == last  # where a restart resumes: the newest real bar
    times = [t for (t,) in query(_db(env), "SELECT time_ms FROM equity_points ORDER BY time_ms")]
    assert times == [t + MINUTE - 1 for t in range(turn, last + 1, MINUTE)]
    assert query(_db(env), f"SELECT count(*) FROM candles WHERE open_time = {future}") == [(0,)]
    shown = _status(env)
    assert shown["feed"]["refused_bars"] == 1
    assert f"the bar of {iso_ms(future)} refused" in shown["last_error"]


@pytest.mark.slow
def test_a_bybit_loop_on_a_clock_behind_bybits_steps_every_bar(
    offline_env, socket, tmp_path
) -> None:
    """Bybit's clock runs 5 min ahead of this machine's: each bar streamed as Bybit closes it
    closes minutes from now by this machine's clock, yet it is stepped, not refused."""
    last = last_closed_minute()  # by this machine's clock
    rest = LiveBybit(falling_then_rising(last))
    rest.skew_ms = 5 * MINUTE
    rest.horizon_ms = last + MINUTE  # the day loaded at start ends at this machine's minute
    env = {
        **offline_env,
        "AGENT_BYBIT__BASE_URL": rest.url,
        "AGENT_BYBIT__STREAM_URL": socket.url,
        "AGENT_BYBIT__MAX_RETRIES": "2",
    }
    log = tmp_path / "stderr.txt"
    newest = last + 4 * MINUTE  # closed by Bybit's clock, 3 min ahead of this machine's
    with rest:
        proc = _start(env, log, feed="bybit")
        try:
            socket.wait_connected()
            socket.send(
                *(kline_message(rest.row(t)) for t in range(last + MINUTE, newest + 1, MINUTE))
            )
            _wait_for(env, newest, proc, log)
        finally:
            code = stop(proc, signal.SIGTERM)
    assert code == 0, log.read_text()[-3000:]
    times = [t for (t,) in query(_db(env), "SELECT time_ms FROM equity_points ORDER BY time_ms")]
    assert times == [t + MINUTE - 1 for t in range(last + MINUTE, newest + 1, MINUTE)]
    assert "refused_bars" not in _status(env)["feed"]


@pytest.mark.slow
def test_after_kill_9_the_minutes_missed_are_stepped_and_the_stop_fills(
    offline_env, socket, tmp_path
) -> None:
    """The README's promise: a kill -9 loses at most the bar in progress. The minute that went
    through the stop while the loop was down is stepped on restart and the stop fills; but no
    decision is made on a missed minute older than risk.max_data_age_ms (2 min), even where
    the strategy's averages cross."""
    last = last_closed_minute()
    turn = last - 8 * MINUTE
    rest = LiveBinance(falling_then_rising(turn)).start()
    rest.horizon_ms = turn
    env = _env(offline_env, rest, socket)
    log = tmp_path / "stderr.txt"
    proc = _start(env, log, "--stop-loss", "3")
    held = turn + 3 * MINUTE
    try:
        socket.wait_connected()
        socket.send(*(rest.kline_message(t) for t in range(turn, held + 1, MINUTE)))
        _wait_for(env, held, proc, log)
    finally:
        proc.kill()
        proc.wait()
    ((entry,),) = query(_db(env), "SELECT price FROM paper_fills")  # bought, holding
    crash = held + MINUTE
    # through the 3 % stop, while down, and a close so low that sma_cross 2/3 crosses down on
    # it and up two minutes later (turn + 6, a bar over 2 min old at the restart)
    rest.overrides[crash] = dict.fromkeys("lc", round(entry * 0.9, 2))
    rest.horizon_ms = None
    socket.reset()
    del env["AGENT_RISK__MAX_DATA_AGE_MS"]  # the gate's own freshness rule on the old minutes
    proc = _start(env, log, "--stop-loss", "3")
    try:
        socket.wait_connected()
        socket.send(rest.kline_message(last))
        _wait_for(env, last, proc, log)
    finally:
        code = stop(proc, signal.SIGTERM)
        rest.stop()
    assert code == 0, log.read_text()[-3000:]
    fills = query(_db(env), "SELECT side, time_ms, price FROM paper_fills ORDER BY seq")
    assert len(fills) == 2 and fills[1][:2] == (-1, crash)
    assert fills[1][2] < entry * 0.98  # sold at the stop, in the minute that crossed it
    times = [t for (t,) in query(_db(env), "SELECT time_ms FROM equity_points ORDER BY time_ms")]
    assert times == [t + MINUTE - 1 for t in range(turn, last + 1, MINUTE)]  # none skipped
    assert "arrived after newer history" not in log.read_text()
    decided = [
        json.loads(r)["decided_ms"] for (r,) in query(_db(env), "SELECT record_json FROM decisions")
    ]
    assert decided == [turn + MINUTE - 1]  # the buy before the kill; none on the old minutes
    assert _status(env)["decisions"] == 1
    assert "older than risk.max_data_age_ms (120 s) stepped without decisions" in log.read_text()


def test_the_streams_final_bar_wins_over_a_history_row_fetched_while_it_formed(
    tmp_path,
) -> None:
    """With this machine's clock ahead of the exchange's, the history loaded at start can end
    with the minute still forming (its values so far). When the stream's final bar for that
    minute comes, it is what the minute is decided on, valued at and stored as."""
    from agent.trading_loop import TradingLoop
    from backtest.strategies.sma_cross import SmaCross
    from market.binance_ws import bars_from_frame
    from market.sample import load_sample, sample_rules
    from store import open_store

    frame = load_sample("BTCUSDT").iloc[:1_441].reset_index(drop=True)
    final = bars_from_frame(frame.iloc[-1:], "BTCUSDT", "1m", "stream")[0]
    partial = frame.copy()
    partial.loc[partial.index[-1], ["high", "close"]] = final.close * 1.03  # 3 % off, so far
    db = tmp_path / "agent.db"
    loop = TradingLoop(
        account="a",
        symbols=["BTCUSDT"],
        store=open_store(f"sqlite:///{db}"),
        strategy=SmaCross(SmaCross.Params(fast=2, slow=3)),
        strategy_label="sma_cross fast=2 slow=3",
        rules=sample_rules(),
        history={"BTCUSDT": partial},
        cash=10_000,
        kill_switch=tmp_path / "KILL",
        realtime=True,
    )
    loop.step(final.open_time, {"BTCUSDT": final})
    assert loop.feed.view().symbols["BTCUSDT"].close[-1] == final.close
    stored = query(db, f"SELECT close FROM candles WHERE open_time = {final.open_time}")
    assert stored == [(final.close,)]


def test_a_machine_clock_ahead_of_binances_backfills_no_bar_still_forming() -> None:
    """The REST backfill judged a bar closed by this machine's clock: a minute ahead of
    Binance's, it stored and stepped the bar Binance was still forming, with its values so far.
    Once the loop has measured Binance's clock, a bar must have closed by both."""
    rest = LiveBinance(lambda t: 100.0 + t // MINUTE % 7).start()
    rest.forming = {"c": 150.0}  # the last trade so far, not the bar's close
    ahead = BinanceRestClient(
        BinanceSettings(base_url=rest.base_url, max_retries=0), clock=lambda: time.time() + 60
    )
    try:
        ahead.exchange_clock()
        now = int(time.time() * 1000)
        bars = ahead.klines("BTCUSDT", "1m", now - 10 * MINUTE, now + MINUTE)
        fetched_at = rest.exchange_now_ms()
    finally:
        ahead.close()
        rest.stop()
    assert len(bars) >= 9
    assert (bars["close_time"] < fetched_at).all(), "a bar still forming was taken for closed"
