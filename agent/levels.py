"""`--stop-loss` / `--take-profit` / `--trailing-stop` for the agent: protective levels the run guarantees. Where
the model sets none, the flag's level is used; where it sets one, the tighter of the two wins,
so a flag can only narrow the risk the model takes, never widen it."""

from __future__ import annotations

from collections import Counter

from risk.models import SignalAction, TradeSignal


def _direction(signal: TradeSignal, position: float) -> int:
    """+1 for an entry or add to a long, -1 for a short entry; 0 for anything that reduces."""
    if signal.action is SignalAction.BUY and position >= 0:
        return 1
    if signal.action is SignalAction.SELL and position <= 0:
        return -1
    return 0


def with_levels(
    signal: TradeSignal,
    price: float,
    position: float,
    stop_loss_pct: float | None,
    take_profit_pct: float | None,
    trailing_stop_pct: float | None = None,
) -> tuple[TradeSignal, Counter[str]]:
    """The signal with the run's levels applied, and which level came from where."""
    direction = _direction(signal, position)
    used: Counter[str] = Counter()
    if not direction:
        return signal, used
    update: dict[str, float] = {}
    for name, pct, sign in (("stop_loss", stop_loss_pct, -1), ("take_profit", take_profit_pct, 1)):
        if pct is None:
            continue
        ours = price * (1 + sign * direction * pct)
        theirs = getattr(signal, name)
        tighter = theirs is None or (ours - theirs) * sign * direction < 0
        used[f"{name} from the flag" if tighter else f"{name} from the model (tighter)"] += 1
        if tighter:
            update[name] = ours
    if trailing_stop_pct is not None and direction > 0:
        update["trailing_stop_pct"] = trailing_stop_pct  # the model's tool sets none itself
        used["trailing_stop from the flag"] += 1
    return (signal.model_copy(update=update) if update else signal), used
