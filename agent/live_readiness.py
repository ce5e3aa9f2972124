"""Live needs a paper record: `agent-trade --mode live` starts only when the same strategy,
symbols and risk limits have traded on paper, on the live feed, for `live.require_paper_days`
with no halt left unresolved. Each paper run records what it trades and from which bar; the
days are counted from the bars it stepped after that: a crypto minute bar is a minute of a 24/7
market, a stock's session stands for the real time until the next one (market.calendar), so
both earn a week's record in a week."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, PrivateAttr
from sqlalchemy import Connection, delete, func, insert, select, update

from agent.loop_state import LoopState, kill_switch_path, risk_scope
from core.errors import UserError
from risk.limits import RiskLimits
from risk.protections import TradingState
from risk.records import load_state
from store.db import Store
from store.tables import AccountProfileRow, EquityPointRow, TradingLoopRow

if TYPE_CHECKING:
    from agent.model import ChatModel
    from backtest.config import BacktestConfig

MINUTE_MS, DAY_MINUTES = 60_000, 1_440
LIVE_FEED = "binance"  # the replayed sample is history, not a paper record
_RETIRED_MANUAL = (
    ',"manual":{"max_position_pct":1.0,"max_exposure_pct":1.0,"max_order_notional":100000.0,'
    '"max_orders_per_minute":10,"max_orders_per_hour":100,"risk_per_trade_pct":null,'
    '"atr_stop_multiple":null,"trailing_stop_pct":null,"require_stop_loss":false,'
    '"min_confidence":0.0,"scale_by_confidence":false,"fat_finger_pct":0.05,'
    '"cooldown_after_losses":null,"cooldown_minutes":60,"allow_pyramiding":true}'
)
"""How the limits' JSON ended, with risk.manual's defaults, until that setting was retired (no
path ever placed a person's own order): a record fingerprinted then is these limits' record."""
STOCK_FEED = "alpaca"  # its bars come in sessions: days are the sessions' real span


class TradingProfile(BaseModel):
    """What must be the same on paper and live; the fingerprint names it in the store."""

    strategy: str
    symbols: list[str]
    limits_sha256: str
    _earlier: str | None = PrivateAttr(None)  # the fingerprint these limits had before

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def describe(self) -> str:
        return f"{self.strategy} on {','.join(self.symbols)}, risk limits {self.limits_sha256[:12]}"

    def differences(self, other: TradingProfile) -> list[str]:
        parts = {
            "strategy": self.strategy != other.strategy,
            "symbols": self.symbols != other.symbols,
            "risk limits": self.limits_sha256 != other.limits_sha256,
        }
        return [name for name, differs in parts.items() if differs]


def trading_profile(
    symbols: Sequence[str],
    label: str,
    model: ChatModel | None,
    decide_every: int,
    limits: RiskLimits,
    fills: BacktestConfig,
) -> TradingProfile:
    """What the loop trades: the strategy (the agent's model, prompts and cadence, or a classic
    strategy's spec) with its sizing, the symbols and the gate's limits. The limits' fee
    reserve is left out: paper takes it from its fill model, live from the exchange."""
    strategy = label
    if model is not None:
        from agent.decide import decision_prompt_version  # the graph: only when a loop starts

        strategy += f" {model.model} every {decide_every} min, prompts {decision_prompt_version()}"
    stops = f"stop {fills.stop_loss_pct}, target {fills.take_profit_pct}"
    if fills.trailing_stop_pct is not None:  # named only when set: unset, earlier records hold
        stops += f", trailing {fills.trailing_stop_pct}"
    limits_json = limits.model_dump_json(exclude={"fee_rate"})
    profile = TradingProfile(
        strategy=f"{strategy}; size {fills.size_pct:g} of equity, {stops}",
        symbols=sorted(symbols),
        limits_sha256=_sha256(limits_json),
    )
    before = _sha256(limits_json[:-1] + _RETIRED_MANUAL + "}")
    profile._earlier = profile.model_copy(update={"limits_sha256": before}).fingerprint
    return profile


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _adopt_earlier(conn: Connection, profile: TradingProfile) -> None:
    """Records kept under this profile's earlier fingerprint are its records: renamed, their
    days kept (a retired setting that limited nothing must not restart anyone's count)."""
    conn.execute(
        update(AccountProfileRow)
        .where(AccountProfileRow.fingerprint == profile._earlier)
        .values(fingerprint=profile.fingerprint, profile_json=profile.model_dump_json())
    )


def record_paper_profile(
    store: Store,
    account: str,
    profile: TradingProfile,
    feed: str,
    last_open_time: int | None,
    now_ms: int,
) -> None:
    """A paper run states what it trades; a changed profile or feed restarts the count at the
    account's next bar (bars traded under something else are not evidence for this)."""
    with store.engine.begin() as conn:
        _adopt_earlier(conn, profile)
        stored = conn.execute(
            select(AccountProfileRow.fingerprint, AccountProfileRow.feed).where(
                AccountProfileRow.account == account
            )
        ).first()
        if stored is not None and tuple(stored) == (profile.fingerprint, feed):
            return
        conn.execute(delete(AccountProfileRow).where(AccountProfileRow.account == account))
        since = 0 if last_open_time is None else last_open_time + MINUTE_MS
        conn.execute(
            insert(AccountProfileRow),
            [
                {
                    "account": account,
                    "fingerprint": profile.fingerprint,
                    "feed": feed,
                    "since_ms": since,
                    "updated_ms": now_ms,
                    "profile_json": profile.model_dump_json(),
                }
            ],
        )


@dataclass(frozen=True)
class PaperRecord:
    account: str
    days: float
    differs: list[str]
    halt: str | None


def paper_records(
    store: Store, data_dir: Path, profile: TradingProfile, now_ms: int, feed: str = LIVE_FEED
) -> list[PaperRecord]:
    """Every paper account on the live `feed`: its days under its current profile, how that
    profile differs from `profile`, and a halt left unresolved."""
    with store.engine.begin() as conn:
        _adopt_earlier(conn, profile)
        rows = conn.execute(
            select(
                AccountProfileRow.account,
                AccountProfileRow.since_ms,
                AccountProfileRow.profile_json,
            ).where(AccountProfileRow.feed == feed)
        ).all()
        days = {account: _paper_days(conn, account, since, feed) for account, since, _ in rows}
    records = []
    for account, _, raw in rows:
        risk = load_state(store, risk_scope(account))
        locks = [
            lock.message for lock in risk.active_locks(now_ms) if lock.level is TradingState.HALTED
        ]
        if kill_switch_path(data_dir, account).exists():
            locks.append(f"kill-switch file {kill_switch_path(data_dir, account)}")
        records.append(
            PaperRecord(
                account=account,
                days=days[account],
                differs=TradingProfile.model_validate_json(raw).differences(profile),
                halt="; ".join(locks) or None,
            )
        )
    return sorted(records, key=lambda r: (bool(r.differs), r.halt is not None, -r.days))


def _paper_days(conn: Connection, account: str, since_ms: int, feed: str) -> float:
    """The market time an account's stepped bars (one equity point each) stand for."""
    after = (EquityPointRow.account == account, EquityPointRow.time_ms >= since_ms)
    if feed != STOCK_FEED:
        return conn.execute(select(func.count()).where(*after)).scalar_one() / DAY_MINUTES
    from market.calendar import xnys  # exchange_calendars: only for a stock's record

    raw = conn.execute(
        select(TradingLoopRow.state_json).where(TradingLoopRow.account == account)
    ).scalar_one_or_none()
    step = MINUTE_MS if raw is None else LoopState.model_validate_json(raw).bar_every_ms
    closes = conn.execute(select(EquityPointRow.time_ms).where(*after)).scalars().all()
    return xnys().days_covered(np.asarray(closes, dtype=np.int64) - step + 1, step)


def require_paper_record(
    store: Store,
    data_dir: Path,
    profile: TradingProfile,
    required_days: float,
    now_ms: int,
    notify: Callable[[str], None],
    feed: str = LIVE_FEED,
) -> None:
    """Pass, saying which paper account qualifies (or that the rule is waived), or refuse
    with what is missing. The record is kept on `feed`: Binance's for crypto, Alpaca's for US
    stocks."""
    if required_days == 0:
        notify(
            "notice: live.require_paper_days is 0: the paper record live trading asks for "
            "is waived for this start"
        )
        return
    records = paper_records(store, data_dir, profile, now_ms, feed)
    for record in records:
        if not record.differs and record.halt is None and record.days >= required_days:
            notify(
                f"paper record: account {record.account!r} traded this on paper for "
                f"{record.days:.1f} days (live.require_paper_days {required_days:g})"
            )
            return
    need = (
        f"live trading needs {required_days:g} days of paper trading on the live feed with the "
        f"same strategy, symbols and risk limits ({profile.describe()}) and no halt left "
        "unresolved: "
    )
    same = [r for r in records if not r.differs]
    if same:
        best = same[0]
        if best.halt is not None:
            raise UserError(
                f"{need}paper account {best.account!r} has a halt left unresolved ({best.halt}); "
                f"review it, then `agent-trade resume --account {best.account}`"
            )
        raise UserError(
            f"{need}paper account {best.account!r} has {best.days:.1f} of them; keep it running "
            f"(`agent-trade --feed {feed} --account {best.account}`) for "
            f"{required_days - best.days:.1f} more"
        )
    others = "; ".join(f"{r.account!r} differs in {', '.join(r.differs)}" for r in records[:3])
    raise UserError(
        f"{need}no paper account has traded it"
        + (f" ({others})" if others else "")
        + f"; start one with `agent-trade --feed {feed}` and the same --strategy, --symbol "
        "and settings (or set live.require_paper_days)"
    )
