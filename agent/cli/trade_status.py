"""`agent-trade status`, `fills`, `ledger`, `halt`, `resume` and `reset-drawdown`: they read
and steer the stored loop, so they load the store but not the loop's stack (pandas, the agent)."""

from __future__ import annotations

import argparse
import getpass
import json
import time
from typing import Any

from agent.cli.common import notify
from agent.cli.trade_flags import DEFAULT_REASONS, settings_for
from agent.loop_state import account_status, clear_account, halt_account
from agent.portfolio_book import portfolio_line
from agent.shadow_book import side_by_side_lines, with_shadow
from core.collector import imports_frozen
from core.errors import UserError
from execution.paper_records import accounts, load_account
from risk.interventions import describe
from store import Store, open_store


def print_status(status: dict[str, Any]) -> None:
    currency = status["currency"]
    lines = [
        f"account   {status['account']} ({status['mode']}): {status['status']}"
        + (f" — {status['stop_reason']}" if status["stop_reason"] else ""),
        f"last bar  {status['last_bar']} UTC ({status['bars']:,} bars processed)",
        f"state     {status['trading_state']}"
        + "".join(f"\n          - {message}" for message in status["locks"]),
        f"cash      {status['cash']:,.2f} {currency}",
    ]
    for p in status["positions"]:
        lines.append(
            f"position  {p['quantity']:g} {p['symbol']} at avg {p['avg_price']:,.2f}, "
            f"mark {p['mark']:,.2f} = {p['value']:,.2f} {currency}"
        )
    if not status["positions"]:
        lines.append("positions none")
    lines += [
        f"equity    {status['equity']:,.2f} {currency} · PnL {status['pnl']:+,.2f} "
        f"({status['pnl_pct']:+.3f}%) from {status['initial_cash']:,.2f}",
        f"activity  {status['decisions']} decisions {status['outcomes']}, "
        f"{status['orders']} orders, {status['fills']} fills",
    ]
    last = status["last_decision"]
    if last is not None:
        lines.append(
            f"last      {last['time']} {last['symbol']} {last['outcome']}"
            + (f" ({last['action']})" if last["action"] else "")
            + (f": {last['rationale']}" if last["rationale"] else "")
        )
    lines += [f"limits    {line}" for line in status["limits_text"]]
    if currency == "USDT" or status["portfolio"]["accounts"]:  # where the USDT rate applies
        lines.append(portfolio_line(status["portfolio"]))
    lines += [f"record    {line}" for line in status["interventions"]]
    if key := status["key_permissions"]:
        venue = "Bybit " if key["exchange"] == "bybit" else ""
        lines.append(f"key       {venue}{key['summary']} (checked {key['checked']})")
    lines.append(f"error     {status['last_error'] or 'none'}")
    shadow = status.get("shadow")
    if shadow is not None:
        lines.append("shadow    the same bars through the same gate (what the model adds):")
        lines += [f"          {line}" for line in side_by_side_lines(status, shadow)]
    print("\n".join(lines))


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    status = with_shadow(store, account_status(store, args.account, settings), settings)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return 0


def _who(args: argparse.Namespace) -> str:
    if args.by:
        return args.by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment
        return "unknown user"


def _known(store: Store, account: str) -> None:
    """A halt names an account the store holds: a mistyped name would report a halt while the
    real account trades on (and its stray kill-switch file no command could clear)."""
    known = accounts(store)
    if account not in known:
        raise UserError(
            f"no trading account {account!r} in {store.shown} to halt (accounts: "
            f"{', '.join(known) or 'none yet'}); nothing was halted"
        )


def cmd_steer(args: argparse.Namespace) -> int:
    """halt, resume or reset-drawdown, recorded with who and why."""
    settings = settings_for(args)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    now = int(time.time() * 1000)
    reason = args.reason or DEFAULT_REASONS[args.command]
    if args.command == "halt":
        if args.chat:
            raise UserError("halt --chat: pull the kill switch in the UI's Trading tab")
        _known(store, args.account)
        path = halt_account(store, settings.data_dir, args.account, reason, now, _who(args))
        print(f"halted {args.account!r}: {reason} (kill-switch file {path})")
        return 0
    action = "resume" if args.command == "resume" else "reset_drawdown"
    target = None if args.chat else args.account
    step, state = clear_account(store, settings, target, action, _who(args), reason, now)
    name = "the chat desk" if target is None else repr(target)
    done = "cleared the kill switch of" if action == "resume" else "reset the drawdown lock of"
    print(f"{done} {name}: now {state.trading_state(now).value}; recorded {describe(step)}")
    return 0


def cmd_fills(args: argparse.Namespace) -> int:
    """Every fill of the account, oldest first: what a backtest's fills are compared with."""
    settings = settings_for(args)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    account_status(store, args.account, settings)  # one line and exit 2 for an unknown account
    from backtest.fills import FillOut

    rows = [FillOut.of(fill).model_dump() for fill in load_account(store, args.account).fills]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['time']}  {row['symbol']:<10} {row['side']:<4} {row['quantity']:>14.8f} @ "
            f"{row['price']:>12.2f}  fee {row['fee']:.4f}  {row['reason']:<11} "
            f"{row['client_order_id']}"
        )
    if not rows:
        print(f"account {args.account!r} has no fills yet")
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """What each rule of the gate saved or cost this account, priced from the bars after each
    vetoed or clamped decision (scorecard.ledger_horizons)."""
    with imports_frozen():  # pricing the vetoes brings pandas (core.collector)
        from rich.console import Console

        from agent.trade_ledger import account_ledger
        from backtest.terminal import render_ledger

    settings = settings_for(args)
    store = open_store(settings.resolved_database_url, settings.timescaledb)
    account_status(store, args.account, settings)  # one line and exit 2 for an unknown account
    ledger = account_ledger(store, args.account, settings.scorecard.ledger_minutes, notify)
    if args.json:
        print(ledger.model_dump_json(indent=2))
    elif not ledger.by_code:
        print(f"account {args.account!r}: the gate has vetoed or clamped no trade yet")
    else:
        Console().print(render_ledger(ledger.model_dump()))
    return 0
