"""`agent-trade` (run): the loop on a paper, testnet or live account, built from the checked
flags; the agent or a classic strategy trades through the runner a backtest drives."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.cli.common import EXIT_RUNTIME, EXIT_USER, notify
from agent.cli.equity import check_stock_trade, parse_symbols, session_line, stock_rules
from agent.cli.strategy_flags import param_flags
from agent.cli.trade_flags import AGENT, PAPER
from agent.cli.trade_status import print_status
from agent.live_readiness import (
    LIVE_FEED,
    record_paper_profile,
    require_paper_record,
    trading_profile,
)
from agent.loop_state import LoopState, account_status, kill_switch_path
from agent.portfolio_book import portfolio_of
from agent.shadow_book import shadow_account, shadow_strategy, strategy_label, with_shadow
from backtest.config import BacktestConfig
from config import Settings
from config.settings import TradingSettings
from core.errors import UserError
from execution.fees import FeeSchedule
from execution.paper_records import load_account
from execution.slippage import FixedBps
from market.corporate import CorporateActions, read_actions
from market.csv_import import sniff_interval
from market.instruments import AssetClass, asset_class, quote_of, require_class
from market.models import INTERVAL_MS, iso_ms, parse_symbol
from market.sample import (
    DEPTH_SAMPLE_SYMBOLS,
    SAMPLE_INTERVAL,
    SAMPLE_SYMBOLS,
    load_sample,
    sample_rules,
)
from risk.limits import RiskLimits
from runtime.hours import TradingHours
from runtime.warmup import WARMUP_BARS, warmup_start
from store import Store, open_store

if TYPE_CHECKING:  # prepare_run imports these as it builds the loop
    import pandas as pd

    from agent.cli.alpaca_feed import AlpacaFeed
    from agent.records import DecisionRecord
    from agent.trading_loop import TradingLoop
    from runtime.strategy import Strategy


DAY_BARS, MINUTE_MS = 1_440, 60_000
log = logging.getLogger(__name__)


def _symbols(text: str) -> list[str]:
    symbols = list(dict.fromkeys(parse_symbol(s) for s in text.split(",") if s.strip()))
    if not symbols:
        raise UserError("invalid --symbol: give at least one, e.g. BTCUSDT")
    return symbols


def _stock_symbols(args: argparse.Namespace) -> list[str] | None:
    """The run's stock tickers when --symbol names US stocks (None for crypto pairs)."""
    symbols, kind = parse_symbols(args.symbol)
    if kind is AssetClass.CRYPTO and args.exchange is not None:
        raise UserError(
            "--exchange replays a stock's stored bars: a crypto replay plays the bundled sample"
        )
    if args.exchange is not None and args.feed != "replay":
        raise UserError(f"--exchange picks stored bars to replay: --feed {args.feed} is live")
    if kind is AssetClass.CRYPTO:
        if args.feed == "alpaca":
            require_class(symbols[0], AssetClass.EQUITY, "alpaca")
        if args.extended_hours:
            raise UserError("--extended-hours applies to US stocks only; crypto trades 24/7")
        return None
    check_stock_trade(args, symbols)
    from agent.cli.backtest_flags import check_exchange

    args.exchange = check_exchange(args, kind)
    return list(dict.fromkeys(symbols))


class _ProgressBar:
    """Bars done of the replay, with equity and decisions, on stderr."""

    def __init__(self, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]trading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task("bars", total=total, info="")

    def on_bar(self, loop: TradingLoop, seconds: float) -> None:
        state = loop.state
        info = f"equity {loop.venue.equity():,.2f} · {state.decisions} decisions"
        if state.last_decision is not None:
            info += f" · last {state.last_decision.outcome}"
        self.progress.update(self.task, advance=1, info=info)

    def on_decision(self, record: DecisionRecord) -> None:
        pass


def replay_sample(args: argparse.Namespace) -> bool:
    """A replay of the bundled sample (crypto, no --data), not of the user's or stored bars."""
    return args.data is None and asset_class(parse_symbols(args.symbol)[0][0]) is AssetClass.CRYPTO


def _replay_frames(
    args: argparse.Namespace, symbols: list[str], interval: str = SAMPLE_INTERVAL
) -> dict[str, pd.DataFrame]:
    """What a replay plays: the user's file (one symbol, as agent-backtest --data), or the
    bundled sample."""
    if args.data is not None:
        from market.source import load_csv_candles

        if len(symbols) != 1:
            raise UserError("--data reads one symbol's bars: give a single --symbol")
        stock = interval != SAMPLE_INTERVAL or asset_class(symbols[0]) is AssetClass.EQUITY
        frame = load_csv_candles(args.data, interval, notify, stock=stock)
        frame = frame.reset_index(drop=True)
        if frame.empty:
            raise UserError(f"--data {args.data}: no usable {interval} bars")
        return {symbols[0]: frame}
    for symbol in symbols:
        if symbol not in SAMPLE_SYMBOLS:
            raise UserError(
                f"--feed replay has no {symbol}: the bundled sample holds {', '.join(SAMPLE_SYMBOLS)}"
                " (or replay your own bars with --data FILE)"
            )
    return {s: load_sample(s) for s in symbols}


def _last_committed(store: Store, account: str) -> int | None:
    """The open time of the account's last committed bar (None for a new account)."""
    stored = load_account(store, account).state_json
    return None if stored is None else LoopState.model_validate_json(stored).paper.last_open_time


def _replay_plan(
    store: Store,
    account: str,
    frames: dict[str, pd.DataFrame],
    own_data: bool,
    step_ms: int = MINUTE_MS,
) -> tuple[int, int, dict[str, pd.DataFrame]]:
    """Where the replay starts (after the account's last bar; a new account at the file's first
    bar, or a day into the sample), where it ends, and the history before the start."""
    times = next(iter(frames.values()))["open_time"]
    first = int(times.iloc[0 if own_data else WARMUP_BARS])
    last = _last_committed(store, account)
    start = first if last is None else last + step_ms
    end = int(times.iloc[-1])
    if start > end:
        what = "the whole file" if own_data else "the whole bundled sample"
        raise UserError(
            f"account {account!r} has already traded {what} (to "
            f"{iso_ms(end)} UTC): use a new --account, or `agent-trade status` to see it"
        )
    # The warm-up before the account's first bar, also after a restart: indicators that
    # remember their whole input (RSI, ATR, EMAs) then read the same values as an uninterrupted
    # run, and as agent-backtest's over the same window.
    since = int(times.iloc[warmup_start(times.to_numpy(), first)])
    history = {
        s: f[(f["open_time"] >= since) & (f["open_time"] < start)] for s, f in frames.items()
    }
    return start, end, history


class _Snapshots:
    """Depth snapshots from wherever the feed runs, known once it is up (a replay's port)."""

    def __init__(self) -> None:
        self.fetch: Callable[[str], Any] | None = None

    def __call__(self, symbol: str) -> Any:
        if self.fetch is None:
            raise RuntimeError("no depth snapshot source yet")
        return self.fetch(symbol)


async def _run_loop(
    loop: TradingLoop,
    args: argparse.Namespace,
    settings: Settings,
    replay: tuple[int, int, dict[str, pd.DataFrame]] | None,
    depth: list[str],
    snapshots: _Snapshots,
    stop: asyncio.Event,
) -> str:
    from market.binance_rest import BinanceRestClient
    from market.binance_ws import BinanceStream, depth_stream, rest_backfill
    from market.books import rest_snapshots
    from market.replay_server import ReplayServer, frame_backfill

    streams = [f"{s.lower()}@kline_{loop.interval}" for s in loop.symbols]
    streams += [depth_stream(s) for s in depth]
    resume = (
        {}
        if loop.last_open_time is None
        else {(s, loop.interval): loop.last_open_time for s in loop.symbols}
    )
    if args.feed == "bybit":
        from venues.bybit.rest import BybitRestClient
        from venues.bybit.stream import BybitStream, book_topic, kline_topic

        topics = [kline_topic(s) for s in loop.symbols] + [book_topic(s) for s in depth]
        public = BybitRestClient(settings.bybit)
        async with BybitStream(
            topics,
            url=settings.bybit.stream_url,
            silence_s=settings.bybit.stream_silence_s,
            backfill=rest_backfill(public),
            resume_after=resume,
            clock_ms=await asyncio.to_thread(public.exchange_clock),
        ) as bybit:
            return await loop.run(bybit, stop, max_bars=args.max_bars)
    if replay is None:
        client = BinanceRestClient(settings.binance)
        snapshots.fetch = rest_snapshots(client)
        stream = BinanceStream(
            streams,
            base_url=settings.binance.stream_url,
            backfill=rest_backfill(client),
            resume_after=resume,
            silence_s=settings.binance.stream_silence_s,
            clock_ms=await asyncio.to_thread(client.exchange_clock),
        )
        async with stream:
            return await loop.run(stream, stop, max_bars=args.max_bars)
    start, end, frames = replay
    server = await ReplayServer(
        speed=args.speed,
        start_time_ms=start,
        drop_after=args.drop_every,
        frames=None if replay_sample(args) else frames,  # the sample: with its depth
        interval=loop.interval,
    ).start()
    depth_client = BinanceRestClient(
        settings.binance.model_copy(update={"base_url": server.http_url})
    )
    snapshots.fetch = rest_snapshots(depth_client, limit=100)  # the replay book is shallow
    stream = BinanceStream(
        streams,
        base_url=server.url,
        backfill=frame_backfill(frames, loop.interval),
        resume_after=resume,
        backoff_base_s=0.05,
        backoff_max_s=1.0,
    )
    try:
        return await loop.run(stream, stop, max_bars=args.max_bars, end_open_time=end)
    finally:  # the server first: a client that stopped reading cannot finish a close handshake
        await server.stop()
        await stream.aclose()
        depth_client.close()


def _exchange_history(
    settings: Settings, exchange: str, symbols: list[str], resume_after: int | None
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The day of bars from the feed's exchange up to now, or up to the account's last committed
    bar on a restart (the minutes since are then stepped in order, its stops included), without
    a row no market could print (it would poison every indicator), and its rules."""
    from market.binance_rest import BinanceError
    from venues.bybit.rest import BybitError
    from venues.registry import market_data

    now = int(time.time() * 1000) if resume_after is None else resume_after
    try:
        with market_data(exchange, settings) as client:
            history = {
                s: _possible_rows(
                    s, client.klines(s, SAMPLE_INTERVAL, now - WARMUP_BARS * MINUTE_MS, now)
                )
                for s in symbols
            }
            return history, client.rules(symbols) if exchange == "bybit" else {}
    except (BinanceError, BybitError) as exc:
        raise UserError(
            f"--feed {exchange} cannot load the last day of bars: {exc} (offline, use --feed "
            "replay)"
        ) from None


def _possible_rows(symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
    from market.validation import check_candles, row_problem

    bad = check_candles(frame, SAMPLE_INTERVAL)[1]
    if bad is None:
        return frame
    first = frame[bad].iloc[0]
    notify(
        f"{symbol}: {int(bad.sum())} bar(s) of the last day refused, first at "
        f"{iso_ms(first['open_time'])} UTC: {row_problem(first)}"
    )
    return frame[~bad].reset_index(drop=True)


def _fills(args: argparse.Namespace, trading: TradingSettings) -> BacktestConfig:
    """A paper account's fill model and a classic strategy's sizing, in the backtest's terms."""
    from agent.cli.backtest_flags import _percent, _size, flag_error

    try:
        return BacktestConfig(
            cash=args.cash,
            size_pct=_size(args.size or "all"),
            fees=FeeSchedule.from_bps(
                trading.paper_fee_bps if args.fee_bps is None else args.fee_bps
            ),
            slippage=FixedBps(
                bps=trading.paper_slippage_bps if args.slippage_bps is None else args.slippage_bps
            ),
            stop_loss_pct=None if args.stop_loss is None else args.stop_loss / 100,
            take_profit_pct=None if args.take_profit is None else args.take_profit / 100,
            trailing_stop_pct=_percent(args.trailing_stop),
        )
    except ValidationError as exc:
        raise flag_error(exc, args, "setting") from None


def _strategy(
    args: argparse.Namespace,
    settings: Settings,
    rules: dict,
    limits: RiskLimits,
    symbols: list,
    hours: TradingHours | None = None,
) -> tuple[Strategy, str, Any]:
    """The agent (with its model) or a classic strategy, and the label its account keeps."""
    from agent.cli.backtest_flags import _build_strategy, _strategy_params

    if args.strategy != AGENT:
        if args.budget_usd is not None or args.yes:
            flag = "--budget-usd" if args.budget_usd is not None else "--yes"
            raise UserError(f"{flag} does not apply to {args.strategy}: it calls no model")
        cls, params = _strategy_params(args)
        assert cls is not None
        strategy = _build_strategy(cls, params)
        return strategy, strategy_label(strategy), None
    given = _param_flags_given(args)
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} does not apply to the agent")
    from agent.cli.agent_flags import check_cost
    from agent.estimate import from_sample
    from agent.model import open_model
    from agent.strategy import trading_agent

    model = open_model(settings, notify)
    strategy = trading_agent(
        model,
        rules,
        account=args.account,
        decide_every=args.decide_every,
        cash=args.cash,
        limits=limits,
        market_state=None if hours is None else hours.state,
    )
    per = partial(
        from_sample, strategy.tools, strategy.system_prompt, settings.llm, args.cash, limits
    )
    check_cost(args, model, settings, DAY_BARS // args.decide_every * len(symbols), per, " per day")
    return strategy, AGENT, model


def _param_flags_given(args: argparse.Namespace) -> list[str]:
    return [f for f in param_flags() if getattr(args, f, None) is not None]


@dataclass
class PreparedRun:
    """A loop built from `agent-trade`'s flags, and what running and finishing it take; the
    command runs it under its signals, `agent-server --trade` on a thread of its own."""

    loop: TradingLoop
    args: argparse.Namespace
    settings: Settings
    store: Store
    replay: tuple[int, int, dict[str, pd.DataFrame]] | None
    depth: list[str]
    snapshots: _Snapshots
    model: Any
    progress: _ProgressBar
    alpaca: AlpacaFeed | None = None

    async def run(self, stop: asyncio.Event) -> str:
        if self.alpaca is not None:
            feed = self.loop.feed.view()
            last = int(feed.open_time[-1]) if len(feed) else self.loop.last_open_time
            poller = self.alpaca.poller(self.loop.symbols, last)
            return await self.loop.run(poller, stop, max_bars=self.args.max_bars)
        return await _run_loop(
            self.loop, self.args, self.settings, self.replay, self.depth, self.snapshots, stop
        )

    def finish(self, reason: str) -> None:
        finished = reason.startswith("the replay reached")
        self.loop.finish("finished" if finished else "stopped", reason)
        if self.model is not None:
            self.model.close()

    def failed(self, exc: Exception) -> int:
        """Record why the loop stopped: a refusal as it was said, anything else with exit 1."""
        if isinstance(exc, UserError):
            self.loop.finish("stopped", str(exc))
            return EXIT_USER
        return _failed(self.loop, exc)


def prepare_run(args: argparse.Namespace, settings: Settings) -> PreparedRun:
    """Open the store and build the loop, its feed plan and its venue, from flags and settings
    `run_settings` checked."""
    from agent.cli.stock_replay import stored_stocks
    from agent.trading_loop import TradingLoop
    from execution.slippage import BookWalk
    from execution.venues import alpaca_venue, paper_venue, reconcile, signed_venue
    from market.books import Books
    from runtime.runner import Sizing

    rule = None if args.shadow is None else shadow_strategy(args.shadow)
    stocks = _stock_symbols(args)
    symbols = stocks or _symbols(args.symbol)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    stored = None
    if stocks is not None and args.feed == "replay" and args.data is None:
        stored = stored_stocks(store, stocks, args.exchange)
    if args.feed == "alpaca":
        interval = settings.alpaca.interval
    elif stored is not None:
        interval = stored.interval
    else:
        interval = SAMPLE_INTERVAL if stocks is None else sniff_interval(args.data)
    fills = _fills(args, settings.trading)
    hours = None
    actions = None
    if stored is not None:
        actions = stored.actions
    elif stocks is not None:
        files = {} if args.data is None else {s: read_actions(args.data, interval) for s in stocks}
        actions = CorporateActions(files)
    if stocks is not None:
        fills = fills.model_copy(update={"fees": FeeSchedule(maker=0.0, taker=0.0)})
        hours = TradingHours(
            INTERVAL_MS[interval], settings.equity.hours(extended_hours=args.extended_hours)
        )
        if args.feed == "alpaca" and args.mode != PAPER and hours.config.extended_hours:
            raise UserError(
                "extended hours at Alpaca take limit orders only and the loop sends market "
                "orders: drop --extended-hours (or equity.extended_hours) for --mode "
                f"{args.mode}"
            )
    replay = alpaca = None
    if args.feed == "replay":
        frames = stored.frames if stored else _replay_frames(args, symbols, interval)
        own = args.data is not None or stored is not None
        start, end, history = _replay_plan(store, args.account, frames, own, INTERVAL_MS[interval])
        replay = (start, end, frames)
        times = next(iter(frames.values()))["open_time"]
        total: int | None = int(((times >= start) & (times <= end)).sum())
        what = f"{args.data}" if args.data is not None else "the bundled Binance sample"
        what = stored.line() if stored else what
        pace = "as fast as the loop steps" if math.isinf(args.speed) else f"at {args.speed:g}×"
        notify(
            f"feed: {what} replayed {pace} from {iso_ms(start)} UTC through a loopback "
            "WebSocket (no network)"
        )
    elif args.feed == "alpaca":
        from agent.cli.alpaca_feed import alpaca_feed, feed_line  # httpx: Alpaca's REST only

        total = None
        alpaca = alpaca_feed(settings, store, args.account, symbols, args.mode)
        history = alpaca.history
        notify(feed_line(alpaca, symbols))
    else:
        total = None
        resume = _last_committed(store, args.account)
        history, exchange_rules = _exchange_history(settings, args.feed, symbols, resume)
        notify(f"feed: {args.feed.capitalize()} public market data")
    if args.max_bars is not None:
        total = args.max_bars if total is None else min(total, args.max_bars)
    limits = settings.risk
    paper_limits = limits.with_cost_reserve(fills.cost_reserve())
    if alpaca is not None and args.mode != PAPER:
        rules = alpaca.rules
        venue = alpaca_venue(settings, args.mode, rules, store, args.account, notify)
    elif args.mode != PAPER:
        exchange = "bybit" if args.feed == "bybit" else "binance"
        rules, venue = signed_venue(
            exchange, settings, args.mode, symbols, store, args.account, notify
        )
    else:  # a user's file trades with the filters agent-backtest --data gives it
        from agent.cli.backtest_flags import _rules
        from agent.cli.window import venue_rules

        rules = _rules(symbols, []) if args.data is not None else sample_rules()
        if stocks is not None and alpaca is not None:
            rules = alpaca.rules
        elif stocks is not None:
            rules = stock_rules(frames)
            notify(session_line(symbols[0], frames[symbols[0]], hours))
        if args.feed == "binance":  # any listed symbol, by Binance's own rules
            rules = _rules(symbols, [], venue_rules(settings, store, symbols, notify))
        if args.feed == "bybit":
            rules = exchange_rules
        limits = paper_limits
    # Depth streams feed the gate's spread check and paper slippage: every symbol on Binance,
    # the symbols with a real depth capture in a replay of the sample, none for a user's file.
    depth = symbols if replay is None else [s for s in symbols if s in DEPTH_SAMPLE_SYMBOLS]
    if not replay_sample(args) or alpaca is not None:
        depth = []
    snapshots = _Snapshots()
    books = Books(None if args.feed == "bybit" else snapshots) if depth else None
    if depth:
        notify(f"order book: {', '.join(depth)} from the depth stream (spread check, slippage)")
    walks = {s: BookWalk(s, books, fills.slippage) for s in depth} if books else {}
    fees = fills.fees if stocks is None else settings.equity.fees
    paper = paper_venue(
        rules, fees=fees, slippage=fills.slippage, symbol_slippage=walks, actions=actions
    )
    if args.mode == PAPER:
        venue = paper

    strategy, label, model = _strategy(args, settings, rules, limits, symbols, hours)
    profile = trading_profile(symbols, label, model, args.decide_every, limits, fills)
    if args.mode == "live":
        live = settings.live.require_paper_days
        feed = "alpaca" if alpaca is not None else LIVE_FEED  # a stock's record is Alpaca's
        require_paper_record(
            store, settings.data_dir, profile, live, int(time.time() * 1000), notify, feed
        )
    observers: list[Any] = []
    if args.metrics_port is not None:
        from agent.loop_metrics import LoopMetrics

        metrics = LoopMetrics()
        metrics.serve(args.metrics_port)
        observers.append(metrics)
        notify(f"metrics: http://127.0.0.1:{args.metrics_port}/metrics")
    bar = _ProgressBar(total)
    observers.append(bar)
    kill_file = kill_switch_path(settings.data_dir, args.account)
    shared_terms = {  # a shadow sees the same bars, rules, cash and books as its loop
        "symbols": symbols,
        "store": store,
        "rules": rules,
        "history": history,
        "cash": args.cash,
        "books": books,
        "realtime": args.feed != "replay",
        "exchange": args.feed if args.feed in ("bybit", "alpaca") else "binance",
        "bar_every_ms": INTERVAL_MS[interval]
        if args.feed != "replay"
        else int(MINUTE_MS / args.speed),
        "interval": interval,
        "hours": hours,
        "actions": actions,
    }
    if alpaca is not None:  # the gate judges a bar's age by Alpaca's clock
        shared_terms["wall_ms"] = alpaca.time.now_ms
    shadow = None
    if rule is not None:
        shadow = TradingLoop(
            account=shadow_account(args.account),
            strategy=rule,
            strategy_label=strategy_label(rule),
            kill_switch=kill_switch_path(settings.data_dir, shadow_account(args.account)),
            limits=paper_limits,
            sizing=Sizing(),  # the strategy's defaults, as agent-backtest sizes it
            mode=PAPER,
            venue=paper,
            collect=False,
            **shared_terms,
        )
    loop = TradingLoop(
        account=args.account,
        strategy=strategy,
        strategy_label=label,
        kill_switch=kill_file,
        limits=limits,
        sizing=Sizing(
            size_pct=fills.size_pct,
            stop_loss_pct=fills.stop_loss_pct,
            take_profit_pct=fills.take_profit_pct,
            trailing_stop_pct=fills.trailing_stop_pct,
        ),
        observers=observers,
        mode=args.mode,
        venue=venue,
        shadow=shadow,
        portfolio=portfolio_of(store, args.account, quote_of(symbols[0]), settings.portfolio),
        **shared_terms,
    )
    if loop.last_open_time is not None:
        notify(f"resuming account {args.account!r} after the bar of {iso_ms(loop.last_open_time)}")
    notify(f"strategy: {label}")
    if shadow is not None:
        since = shadow.last_open_time
        notify(
            f"shadow: {shadow.state.strategy} on paper account {shadow.account!r}, the same bars "
            "through the same gate"
            + ("" if since is None else f" (resuming after the bar of {iso_ms(since)})")
        )
    if args.mode == PAPER:
        record_paper_profile(
            store, args.account, profile, args.feed, loop.last_open_time, int(time.time() * 1000)
        )
        notify("orders: a paper account filled by the backtest's fill model (nothing is sent)")
    else:
        reconcile(loop.venue, args.mode, args.account)  # type: ignore[arg-type]
        exchange = loop.venue.exchange  # type: ignore[attr-defined]
        notify(
            f"orders: {exchange} {args.mode}, reconciled ({len(loop.venue.orders)} known orders)"
        )
    notify(f"kill switch: touch {kill_file} (or run `agent-trade halt`) to halt")
    return PreparedRun(loop, args, settings, store, replay, depth, snapshots, model, bar, alpaca)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    prepared = prepare_run(args, settings)
    with prepared.progress.progress:
        try:
            reason = asyncio.run(_until_signalled(prepared))
        except UserError as exc:  # the LLM endpoint refused: `status` says why it stopped
            prepared.failed(exc)
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # unattended: say why it stopped, where `status` will show it
            return prepared.failed(exc)
    prepared.finish(reason)
    store, settings = prepared.store, prepared.settings
    print_status(with_shadow(store, account_status(store, args.account, settings), settings))
    return 0


async def _until_signalled(prepared: PreparedRun) -> str:
    """The loop until it ends, or SIGINT or SIGTERM asks it to stop after its current step."""
    stop = asyncio.Event()
    running = asyncio.get_running_loop()

    def on_signal(number: int) -> None:
        if not stop.is_set():
            notify(f"{signal.Signals(number).name}: finishing the current step, then stopping")
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(number, on_signal, number)
    return await prepared.run(stop)


def _failed(loop: TradingLoop, exc: Exception) -> int:
    """Record the failure with the account (the last committed bar is where a restart resumes)
    and exit 1 with one line; the traceback goes to the log."""
    why = f"failed: {type(exc).__name__}: {exc}"
    log.error("the trading loop %s", why, exc_info=exc)
    try:
        loop.state = loop.state.model_copy(update={"last_error": why})
        loop.finish("stopped", why)
    except Exception:  # the store itself may be what failed
        log.exception("could not record the failure in the store")
    notify(f"error: the loop {why}; `agent-trade` again resumes after the last committed bar")
    return EXIT_RUNTIME
