"""`agent-trade`: the unattended loop on a paper account (the default), and `status`, `fills`,
`halt` and `resume` to inspect and steer it from another terminal. The agent or any classic
strategy trades through the same runner a backtest drives.

    agent-trade --feed replay [--speed 600|max]   the bundled sample through a loopback WebSocket
    agent-trade --feed replay --data FILE.csv      your own bars, as agent-backtest --data reads them
    agent-trade --strategy sma_cross --fast 20      a classic strategy instead of the agent
    agent-trade --feed binance                      Binance's public stream (network), paper fills
    agent-trade --feed bybit                        Bybit's public spot stream, paper fills
    agent-trade --feed bybit --mode testnet         signed orders on Bybit's testnet (BYBIT_API_KEY)
    agent-trade --feed alpaca --symbol AAPL         US stocks: Alpaca's bars, paper fills (APCA_*)
    agent-trade --feed alpaca --mode testnet        orders on Alpaca's paper-trading account
    agent-trade status | fills | ledger | halt | resume | reset-drawdown [--account NAME | --chat]
"""

from __future__ import annotations

import sys

from agent.cli.common import run
from agent.cli.trade_flags import no_steering, only_its_flags, parser, run_settings
from core.collector import imports_frozen
from core.errors import UserError


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.shadow and args.command != "run":
        raise UserError(
            f"--shadow is for running the loop; `agent-trade {args.command} --account "
            "NAME-shadow` reads a shadow account like any other"
        )
    only_its_flags(args, argv)
    if args.command != "run":  # they read the store: the loop's stack stays unloaded
        with imports_frozen():
            from agent.cli import trade_status

        if args.command == "status":
            return trade_status.cmd_status(args)
        if args.command == "fills":
            return trade_status.cmd_fills(args)
        if args.command == "ledger":
            return trade_status.cmd_ledger(args)
        return trade_status.cmd_steer(args)
    no_steering(args)
    settings = run_settings(args)
    with imports_frozen():
        from agent.cli.trade_run import cmd_run  # the agent, pandas and the feeds: only to run

    return cmd_run(args, settings)


def main(argv: list[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
