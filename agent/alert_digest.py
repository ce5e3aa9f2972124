"""Alerts read from the records rather than from a change of status: a veto of a signal that
asked for more than `alerts.large_veto_usdt`, and each account's UTC day once its clock has
passed it (equity, PnL, fills, vetoes by reason). The days already summarised are kept in the
data directory, so a restarted `agent-ui` sends none of them twice."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from agent.alert_types import Alert
from agent.loop_state import risk_scope
from config import Settings
from core.security import private_file
from market.models import iso_ms
from store.db import Store
from store.tables import EquityPointRow, PaperFillRow, RiskVerdictRow

DAY_MS = 86_400_000
MAX_DAYS = 7  # days summarised at once after a long absence; older ones are not news
SUMMARISED_FILE = "alerts-summarised.json"
LOOP_SCOPE = risk_scope("")  # every account's verdicts are under this prefix


class Digest:
    """The watch asks it for news at each poll; like the watch, it takes what the store held
    when it started as the baseline."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.large_usdt = settings.alerts.large_veto_usdt
        self.summaries = settings.alerts.daily_summary
        self.path = settings.data_dir / SUMMARISED_FILE
        with store.engine.connect() as conn:
            self._verdict_id = conn.execute(select(func.max(RiskVerdictRow.id))).scalar() or 0

    # -- large vetoes --------------------------------------------------------------------------

    def large_vetoes(self) -> list[Alert]:
        with self.store.engine.connect() as conn:
            newest = conn.execute(select(func.max(RiskVerdictRow.id))).scalar() or 0
            rows = conn.execute(
                select(
                    RiskVerdictRow.scope, RiskVerdictRow.inputs_json, RiskVerdictRow.verdict_json
                )
                .where(
                    RiskVerdictRow.id > self._verdict_id,
                    RiskVerdictRow.id <= newest,
                    RiskVerdictRow.kind == "vetoed",
                    RiskVerdictRow.scope.startswith(LOOP_SCOPE),
                )
                .order_by(RiskVerdictRow.id)
            ).all()
        self._verdict_id = newest
        if self.large_usdt is None:
            return []
        alerts = []
        for scope, inputs_json, verdict_json in rows:
            inputs, verdict = json.loads(inputs_json), json.loads(verdict_json)
            asked = requested_usdt(inputs)
            if asked > self.large_usdt:
                signal, account = inputs["signal"], scope.removeprefix(LOOP_SCOPE)
                reasons = "; ".join(f"{r['code']}: {r['message']}" for r in verdict["reasons"])
                alerts.append(
                    Alert(
                        account=account,
                        kind="large_veto",
                        text=f"{account}: vetoed {signal['action']} {signal['symbol']} asking "
                        f"≈{asked:,.2f} USDT ({iso_ms(inputs['now_ms'])} UTC): {reasons}",
                    )
                )
        return alerts

    # -- the daily summary ---------------------------------------------------------------------

    def daily(self, account: str, last_open_time: int | None, initial_cash: float) -> list[Alert]:
        """The summaries of the days this account's clock has passed since the last one sent;
        an account seen for the first time starts with the day it is in."""
        if not self.summaries or last_open_time is None:
            return []
        today = last_open_time // DAY_MS
        done = self._summarised()
        last = done.get(account)
        if last is not None and last >= today - 1:
            return []
        days = [] if last is None else range(max(last + 1, today - MAX_DAYS), today)
        alerts = [self._summary(account, day, initial_cash) for day in days]
        self._mark(done, account, today - 1)
        return alerts

    def _summary(self, account: str, day: int, initial_cash: float) -> Alert:
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        with self.store.engine.connect() as conn:
            opening = _equity_before(conn, account, start)
            closing = _equity_before(conn, account, end)
            sides = dict(
                conn.execute(
                    select(PaperFillRow.side, func.count())
                    .where(
                        PaperFillRow.account == account,
                        PaperFillRow.time_ms >= start,
                        PaperFillRow.time_ms < end,
                    )
                    .group_by(PaperFillRow.side)
                ).all()
            )
            codes = conn.execute(
                select(RiskVerdictRow.codes).where(
                    RiskVerdictRow.scope == risk_scope(account),
                    RiskVerdictRow.kind == "vetoed",
                    RiskVerdictRow.now_ms >= start,
                    RiskVerdictRow.now_ms < end,
                )
            ).scalars()
            vetoes = Counter(c for row in codes for c in row.split(",") if c and c != "HOLD")
        opening = initial_cash if opening is None else opening
        closing = opening if closing is None else closing
        pnl = closing - opening
        buys, sells = sides.get(1, 0), sides.get(-1, 0)
        by_reason = ", ".join(f"{code} ×{n}" for code, n in vetoes.most_common()) or "none"
        return Alert(
            account=account,
            kind="daily_summary",
            text=f"{account}: {iso_ms(start)[:10]} UTC day: equity {closing:,.2f} USDT, PnL "
            f"{pnl:+,.2f} ({pnl / opening * 100:+.2f}%), {buys + sells} fills ({buys} buys, "
            f"{sells} sells), vetoes: {by_reason}",
        )

    def _summarised(self) -> dict[str, int]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _mark(self, done: dict[str, int], account: str, day: int) -> None:
        """Written whole and renamed into place, so a crash leaves the old file or the new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        private_file(partial)
        partial.write_text(json.dumps({**done, account: day}, sort_keys=True))
        os.replace(partial, self.path)


def requested_usdt(inputs: dict[str, Any]) -> float:
    """What a signal asked for in USDT before the gate sized it: its quantity at the last price,
    its share of equity, or (a close or sell with no size) the whole position."""
    signal, market, portfolio = inputs["signal"], inputs["market"], inputs["portfolio"]
    price = float(signal.get("limit_price") or market["last_price"])
    if signal.get("quantity"):
        return float(signal["quantity"]) * price
    if signal.get("size_pct"):
        return float(signal["size_pct"]) * float(portfolio["equity"])
    if signal["action"] in ("sell", "close"):
        held = portfolio.get("positions", {}).get(signal["symbol"]) or {}
        return float(held.get("quantity", 0.0)) * price
    return 0.0


def _equity_before(conn: Any, account: str, time_ms: int) -> float | None:
    return conn.execute(
        select(EquityPointRow.equity)
        .where(EquityPointRow.account == account, EquityPointRow.time_ms < time_ms)
        .order_by(EquityPointRow.time_ms.desc())
        .limit(1)
    ).scalar()
