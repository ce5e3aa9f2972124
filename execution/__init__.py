"""Order execution: one simulated fill model for backtests and paper trading, and the ledger.

Import from the submodules (`execution.simulator`, `execution.fees`, ...): the package itself
loads nothing, so settings that name a fee model do not load the simulator and pandas."""

import core.engine_build  # noqa: F401  (first: the compiled engine or its source)
