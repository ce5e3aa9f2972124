"""`agent-backtest`'s entry: the flags are parsed and checked first (agent.cli.backtest_flags),
and the run's stack (pandas, the store, the engine) loads only once they pass."""

from __future__ import annotations

import sys

from agent.cli.backtest_flags import _strategy_params, build_parser, check_outputs
from agent.cli.common import run
from agent.cli.flags import given, refuse_inapplicable
from core.collector import imports_frozen


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    typed = given(build_parser, argv)
    cls, params = _strategy_params(args)
    refuse_inapplicable(typed, args.strategy, bool(args.sweep))
    check_outputs(args)
    with imports_frozen():
        from agent.cli.backtest_run import run_parsed  # pandas, the store, the engine: to run

    return run_parsed(args, typed, cls, params)


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
