"""The shadow book: a rule strategy through the same gate, on the same bars, into a paper
account next to the loop's own, so a trader sees what the model adds while it trades."""

from __future__ import annotations

from typing import Any

from agent.loop_state import account_status
from config import Settings
from core.errors import UserError
from execution.paper_records import load_account
from runtime.strategy import Strategy
from store.db import Store

SUFFIX = "-shadow"


def shadow_account(account: str) -> str:
    """Where the shadow of `account` trades: its own paper account, persisted like any other."""
    return account + SUFFIX


def strategy_label(strategy: Strategy) -> str:
    """What an account records it trades: the strategy's name and every parameter's value."""
    values = " ".join(f"{k}={v}" for k, v in strategy.params.model_dump().items())
    return f"{strategy.name} {values}".strip()


def shadow_strategy(name: str) -> Strategy:
    """A classic strategy with its default parameters, as `agent-backtest --strategy NAME`."""
    from backtest.strategies import STRATEGIES  # `status` stays light without it

    cls = STRATEGIES.get(name)
    if cls is None:
        raise UserError(
            f"invalid --shadow {name!r}: a rule strategy, one of {', '.join(STRATEGIES)}"
        )
    return cls(cls.Params())


def with_shadow(store: Store, status: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """`status` with its shadow account's status and `model_adds` (both None without one)."""
    account = shadow_account(status["account"])
    if load_account(store, account).state_json is None:
        return {**status, "shadow": None, "model_adds": None}
    shadow = account_status(store, account, settings)
    return {**status, "shadow": shadow, "model_adds": beside(status, shadow)}


def beside(main: dict[str, Any], shadow: dict[str, Any]) -> dict[str, Any]:
    """The main account less its shadow: what the model (or the main strategy) adds."""
    return {
        "shadow_account": shadow["account"],
        "shadow_strategy": shadow["strategy"],
        "equity": round(main["equity"] - shadow["equity"], 2),
        "pnl": round(main["pnl"] - shadow["pnl"], 2),
        "pnl_pct": round(main["pnl_pct"] - shadow["pnl_pct"], 3),
        "fills": main["fills"] - shadow["fills"],
        "same_last_bar": main["last_open_time"] == shadow["last_open_time"],
    }


def side_by_side_lines(main: dict[str, Any], shadow: dict[str, Any]) -> list[str]:
    """Both accounts in columns, then the difference, for the terminal and the UI."""
    adds = beside(main, shadow)
    rows = [
        ("", main["account"], shadow["account"], "difference"),
        ("strategy", main["strategy"], shadow["strategy"], ""),
        ("equity", f"{main['equity']:,.2f}", f"{shadow['equity']:,.2f}", f"{adds['equity']:+,.2f}"),
        ("PnL", f"{main['pnl']:+,.2f}", f"{shadow['pnl']:+,.2f}", f"{adds['pnl']:+,.2f}"),
        (
            "PnL %",
            f"{main['pnl_pct']:+.3f}",
            f"{shadow['pnl_pct']:+.3f}",
            f"{adds['pnl_pct']:+.3f}",
        ),
        ("fills", str(main["fills"]), str(shadow["fills"]), f"{adds['fills']:+d}"),
        ("last bar", str(main["last_bar"]), str(shadow["last_bar"]), ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    if not adds["same_last_bar"]:
        lines.append("(the two accounts last stepped different bars: the shadow ran on fewer bars)")
    return lines
