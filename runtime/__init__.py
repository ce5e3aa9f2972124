"""One runner for every mode: backtest, paper and live differ only in the clock, the feed and the
venue they hand it. It owns the only market view and the only portfolio view the gate reads."""

import core.engine_build  # noqa: F401  (first: the compiled engine or its source)
