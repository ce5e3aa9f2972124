"""Order-book update latency: median and p99 µs per diff event over a long synthetic stream shaped
like the real captures (tick 0.01, levels per event and share of removals taken from the 71-message
Binance.US stream, quantities from the real messages), on a 5,000-level book; plus the resync time,
the cost of one quote (what the gate, the tool and the fill model read), and the loopback replay of
the real capture beside the bars, through the stream client, REST snapshots and Books.

Run: python benchmarks/bench_orderbook.py [--updates 200000] [--depth 5000] [--seed 7]
     [--replay-bars 60] [--speed 600]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import statistics
import time
from pathlib import Path

from flags import count

from config.settings import BinanceSettings
from market.binance_rest import BinanceRestClient, DepthSnapshot
from market.binance_ws import Bar, BinanceStream, depth_stream
from market.books import Books, rest_snapshots
from market.orderbook import DepthUpdate, OrderBook
from market.replay_server import ReplayServer

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "binance"
US_STREAM = FIXTURES / "ws_binanceus_btcusdt_depthUpdate_stream_2025-07-13_71msgs.jsonl"
SPOT_EVENT = FIXTURES / "ws_spot_btcusdt_depthUpdate_2024-08-07.json"
TICK = 0.01
MID_TICKS = 11_905_000  # 119,050.00 USDT, the Binance.US capture's price area


def _real_shape() -> tuple[list[int], float, list[float]]:
    """Levels per event, share of zero quantities and the non-zero quantities, from the captures."""
    raws = [json.loads(line) for line in US_STREAM.read_text().splitlines()]
    raws.append(json.loads(SPOT_EVENT.read_text()))
    sizes = [len(r["b"]) + len(r["a"]) for r in raws]
    levels = [level for r in raws for level in r["b"] + r["a"]]
    zero_share = sum(float(q) == 0 for _, q in levels) / len(levels)
    quantities = [float(q) for _, q in levels if float(q) > 0]
    return sizes, zero_share, quantities


def _price(ticks: int) -> float:
    return round(ticks * TICK, 2)


def _snapshot(
    depth: int, rng: random.Random, quantities: list[float], update_id: int
) -> DepthSnapshot:
    bids = [(_price(MID_TICKS - 1 - i), rng.choice(quantities)) for i in range(depth)]
    asks = [(_price(MID_TICKS + 1 + i), rng.choice(quantities)) for i in range(depth)]
    return DepthSnapshot(symbol="BTCUSDT", last_update_id=update_id, bids=bids, asks=asks)


def _events(count: int, rng: random.Random, first_id: int) -> list[DepthUpdate]:
    """A random walk of the mid; changes cluster near the top of the book, as real ones do."""
    sizes, zero_share, quantities = _real_shape()
    mid, update_id, events = MID_TICKS, first_id, []
    for _ in range(count):
        mid += rng.choice((-1, 0, 0, 1))
        bids: list[tuple[float, float]] = []
        asks: list[tuple[float, float]] = []
        for _ in range(rng.choice(sizes)):
            distance = int(rng.expovariate(1 / 40)) + 1
            qty = 0.0 if rng.random() < zero_share else rng.choice(quantities)
            if rng.random() < 0.5:
                bids.append((_price(mid - distance), qty))
            else:
                asks.append((_price(mid + distance), qty))
        span = rng.randint(1, 12)
        events.append(
            DepthUpdate(
                E=update_id, s="BTCUSDT", U=update_id, u=update_id + span - 1, b=bids, a=asks
            )
        )
        update_id += span
    return events


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _quote_us(snapshot: DepthSnapshot, repeats: int = 2_000) -> list[float]:
    books = Books(lambda symbol: snapshot)
    first = snapshot.last_update_id + 1
    asyncio.run(books.on_event(DepthUpdate(E=0, s="BTCUSDT", U=first, u=first, b=[], a=[])))
    took = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        books.quote("BTCUSDT", levels=5, depth_bps=10.0)
        took.append((time.perf_counter_ns() - started) / 1000)
    return took


async def _replay(bars: int, speed: float) -> tuple[float, int, int, int, int]:
    """Wall seconds, depth messages, bars with a quote, resyncs and snapshots over `bars`."""
    async with ReplayServer(speed=speed) as server:
        client = BinanceRestClient(BinanceSettings(base_url=server.http_url, max_retries=0))
        # The replayed book has under 30 levels: limit 100 weighs 5, not 50, so the client's
        # request-weight budget never makes a fast replay wait for the next minute.
        books = Books(rest_snapshots(client, limit=100))
        stream = BinanceStream(["btcusdt@kline_1m", depth_stream("BTCUSDT")], base_url=server.url)
        seen = quoted = depth = 0
        started = time.perf_counter()
        async with stream:
            async for event in stream:
                await books.on_event(event)
                depth += isinstance(event, DepthUpdate)
                if isinstance(event, Bar):
                    seen += 1
                    quoted += books.quote("BTCUSDT") is not None
                    if seen == bars:
                        break
        wall = time.perf_counter() - started
        client.close()
        (stats,) = books.stats()
        return wall, depth, quoted, stats.resyncs, stats.snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=count, default=200_000)
    parser.add_argument("--depth", type=count, default=5_000, help="snapshot levels per side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replay-bars", type=count, default=60)
    parser.add_argument("--speed", type=float, default=600.0, help="replay speed (inf: max)")
    args = parser.parse_args()
    logging.getLogger("market.orderbook").setLevel(logging.ERROR)  # the resyncs are deliberate

    rng = random.Random(args.seed)
    _, _, quantities = _real_shape()
    first_id = 1_000_000
    snapshot = _snapshot(args.depth, rng, quantities, first_id - 1)
    events = _events(args.updates, rng, first_id)
    levels = sum(len(e.bids) + len(e.asks) for e in events)
    book = OrderBook("BTCUSDT", lambda: snapshot)

    gc.collect()
    gc.disable()
    clock = time.perf_counter_ns
    apply = book.apply
    took: list[int] = []
    for event in events:
        started = clock()
        apply(event)
        took.append(clock() - started)
    gc.enable()
    assert book.synced and book.resyncs == 0, book.stats()
    apply_us = [t / 1000 for t in took[1:]]  # the first event is the initial sync

    raws = [e.model_dump_json(by_alias=True) for e in events[: min(20_000, len(events))]]
    parse_us: list[float] = []
    parse = DepthUpdate.model_validate_json
    for raw in raws:
        started = clock()
        parse(raw)
        parse_us.append((clock() - started) / 1000)

    # Resync: a gap discards the book; the next event fetches the snapshot, installs it and
    # replays the buffer. The snapshot is prebuilt, so this is our cost, not the network's.
    resync_ms: list[float] = []
    next_id = events[-1].final_update_id + 1
    for _ in range(30):
        fresh = _snapshot(args.depth, rng, quantities, next_id + 5)
        resyncing = OrderBook("BTCUSDT", lambda fresh=fresh: fresh)
        resyncing.apply(DepthUpdate(E=0, s="BTCUSDT", U=next_id + 4, u=next_id + 6, b=[], a=[]))
        resyncing.invalidate("benchmark")
        started = clock()
        resyncing.apply(DepthUpdate(E=0, s="BTCUSDT", U=next_id + 4, u=next_id + 6, b=[], a=[]))
        resync_ms.append((clock() - started) / 1e6)
        assert resyncing.synced

    print(
        f"order book: {len(apply_us):,} diff updates ({levels / len(events):.1f} levels each), "
        f"book of {args.depth:,} levels per side, ending with {len(book.bids()):,} bids and "
        f"{len(book.asks()):,} asks"
    )
    print(
        f"apply per update:         median {statistics.median(apply_us):6.2f} µs   "
        f"p99 {_percentile(apply_us, 0.99):6.2f} µs   max {max(apply_us):8.1f} µs"
    )
    print(
        f"parse (pydantic) per msg: median {statistics.median(parse_us):6.2f} µs   "
        f"p99 {_percentile(parse_us, 0.99):6.2f} µs   ({len(parse_us):,} messages)"
    )
    print(
        f"resync ({args.depth:,}-level snapshot installed, buffer replayed): "
        f"median {statistics.median(resync_ms):.2f} ms   max {max(resync_ms):.2f} ms"
    )
    total = sum(apply_us) / 1e6
    print(f"throughput: {len(apply_us) / total:,.0f} updates/s (apply only)")
    quote_us = _quote_us(snapshot)
    print(
        f"quote (top 5, depth within 10 bps) on {args.depth:,} levels: median "
        f"{statistics.median(quote_us):.1f} µs   p99 {_percentile(quote_us, 0.99):.1f} µs"
    )
    wall, depth, quoted, resyncs, snapshots = asyncio.run(_replay(args.replay_bars, args.speed))
    print(
        f"loopback replay at {args.speed:g}x, {args.replay_bars} bars: {wall:.2f} s, {depth:,} "
        f"depth messages, a quote at {quoted} of {args.replay_bars} bar closes, "
        f"{resyncs} resyncs from {snapshots} REST snapshots"
    )


if __name__ == "__main__":
    main()
