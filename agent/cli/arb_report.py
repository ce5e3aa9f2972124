"""What `agent-arb run` prints at the end, whether the pairs came from bars or live books, on
paper or on the exchanges: pairs by state, each venue's inventory after fees, the PnL."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from arbitrage.pairs import ArbDesk, Holdings, Inventory, PairState
from arbitrage.rebalance import Rebalancer
from market.models import iso_ms


def report_run(
    args: argparse.Namespace,
    desk: ArbDesk,
    start: Mapping[str, Holdings],
    *,
    basis: str,
    span: str,
    mark: float,
    rebalancer: Rebalancer | None = None,
) -> int:
    """Print the run's report (as JSON with --json); `span` says what it ran over."""
    inventory = desk.inventory
    report = {
        "account": args.account,
        "mode": args.mode,
        "basis": basis,
        "pairs": len(desk.pairs),
        "by_state": {s.value: sum(p.state == s for p in desk.pairs) for s in PairState},
        "pnl_quote": sum(p.pnl_quote for p in desk.pairs),
        "inventory_start": {v: h.model_dump() for v, h in start.items()},
        "inventory_end": {v: h.model_dump() for v, h in inventory.holdings.items()},
        "value_change_at_last_mark": inventory.value(mark) - Inventory(start).value(mark),
        "skipped": desk.skipped,
        "transfers": len(rebalancer.transfers) if rebalancer else 0,
        "transfer_cost_quote": rebalancer.cost_quote if rebalancer else 0.0,
        "transfers_skipped": rebalancer.skipped if rebalancer else {},
        "pair_pnl": {p.pair_id: round(p.pnl_quote, 6) for p in desk.pairs},
        "pair_states": {p.pair_id: p.state.value for p in desk.pairs},
        "pair_notes": {p.pair_id: p.note for p in desk.pairs if p.note},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    states = ", ".join(f"{n} {s}" for s, n in report["by_state"].items() if n)
    print(f"account   {args.account} ({args.mode}): {report['pairs']} pairs ({states or 'none'}) "
          f"over {span}")  # fmt: skip
    for pair in desk.pairs[:10]:
        e = pair.edge
        print(
            f"  {pair.pair_id} {iso_ms(pair.opened_ms)} buy {e.buy_venue} sell {e.sell_venue} "
            f"{e.quantity:g} net {e.net_bps:+.2f} bps → {pair.state.value}, "
            f"PnL {pair.pnl_quote:+.4f}" + (f" ({pair.note})" if pair.note else "")
        )
    if len(desk.pairs) > 10:
        print(f"  … {len(desk.pairs) - 10} more (`--json` lists every pair's PnL)")
    for venue in start:
        s, e = report["inventory_start"][venue], report["inventory_end"][venue]
        print(
            f"{venue:<9} base {s['base']:g} → {e['base']:.8f}, quote {s['quote']:,.2f} → "
            f"{e['quote']:,.4f} (after fees)"
        )
    if rebalancer is not None:
        held = "".join(f"; held back: {why} {n:,}" for why, n in rebalancer.skipped.items())
        print(
            f"rebalance {report['transfers']} transfer(s) past a {args.rebalance_at:g} split, "
            f"costing {report['transfer_cost_quote']:.4f} quote in network fees (journaled)" + held
        )
    skipped = ", ".join(f"{why} {n:,}" for why, n in desk.skipped.items())
    print(f"skipped   {skipped or 'none'} (looks without a pair, by reason)")
    print(
        f"PnL       {report['pnl_quote']:+.4f} quote over the pairs; inventory value "
        f"{report['value_change_at_last_mark']:+.4f} at the last mark {mark:,.2f}"
    )
    return 0
