"""Plain copies of the gate's settings for its hot path. A pydantic model answers every
attribute read through its `__getattr__` hook, several times slower than a plain object's,
and the gate reads the same limits and exchange rules on every signal of a run; a frozen
model cannot change, so its copy is made once per model object and kept."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from market.models import SymbolRules
from risk.limits import RiskLimits
from risk.models import ReasonCode, SignalSource
from risk.sizing import Cap, Grid, exact

_ONE = Decimal(1)


class Plain:
    """The model's fields as plain attributes."""

    def __init__(self, model: BaseModel) -> None:
        self.__dict__.update(model.__dict__)

    if TYPE_CHECKING:  # the copied fields, typed as the model declares them

        def __getattr__(self, name: str) -> Any: ...


class PlainLimits(Plain):
    """RiskLimits, with each source's limits plain too, and the cost of a unit with fees."""

    fee_factor: Decimal
    sources: dict[SignalSource, Plain]
    """Each source's limits, plain: the gate reads them here at every signal (a compiled dict
    read, where `for_source` is a Python call)."""

    def __init__(self, limits: RiskLimits) -> None:
        super().__init__(limits)
        self.fee_factor = _ONE + exact(limits.fee_rate)
        self.sources = {source: Plain(limits.for_source(source)) for source in SignalSource}
        for source, plain in self.sources.items():
            setattr(self, source.value, plain)

    def for_source(self, source: SignalSource) -> Plain:
        """SourceLimits' fields, plain."""
        return self.sources[source]


class Filters(Plain):
    """A symbol's rules plus what the gate derives from them: the tick and step grids, the
    filters as floats and the fixed maxQty cap."""

    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal | None
    symbol: str
    status: str

    def __init__(self, rules: SymbolRules) -> None:
        super().__init__(rules)
        self.tick = Grid(rules.tick_size)
        self.step = Grid(rules.step_size)
        self.min_notional_f = float(rules.min_notional)
        self.max_notional_f = None if rules.max_notional is None else float(rules.max_notional)
        self.max_qty_cap = Cap(
            ReasonCode.MAX_QTY,
            float(rules.max_qty),
            1.0,
            rules.max_qty,
            _ONE,
            "exchange maxQty {!s}",
            rules.max_qty,
        )
