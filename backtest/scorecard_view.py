"""The scorecard as rows and lines, from its JSON form, so the terminal and the HTML page show
the same cells."""

from __future__ import annotations

from typing import Any

RESULT_COLUMNS = ("run", "Return [%]", "Sharpe Ratio", "Max. DD [%]", "trades", "vetoed")
INTERVAL_COLUMNS = ("run", "Return [%] 95% interval", "Sharpe 95% interval")
CALIBRATION_COLUMNS = ("confidence", "decisions", "mean conf.", "hit rate")


def _num(value: float | None, places: int) -> str:
    return "n/a" if value is None else f"{value:,.{places}f}"


def _ci(ci: dict[str, Any], places: int) -> str:
    if ci.get("na") or ci.get("low") is None:
        return "n/a"
    return f"{_num(ci['low'], places)} to {_num(ci['high'], places)}"


def _runs(card: dict[str, Any]) -> list[tuple[str, dict[str, Any], float | None]]:
    """(name, figures, return shown): the agent net of its model cost, then each baseline, the
    random one by its median."""
    agent = card["agent"]
    net = agent["net_return_pct"]
    runs = [("agent (net)" if net is not None else "agent (gross)", agent, net)]
    for name, f in card["baselines"].items():
        figures = f.get("median", f)
        runs.append((name, figures, figures["return_pct"]))
    return runs


def result_rows(card: dict[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            _num(shown, 2),
            _num(f["sharpe"], 2),
            _num(f["max_drawdown_pct"], 2),
            f"{f['trades']}" + (f" +{f['open_at_end']} open" if f.get("open_at_end") else ""),
            str(sum(f["vetoed"].values())),
        ]
        for name, f, shown in _runs(card)
    ]


def interval_rows(card: dict[str, Any]) -> list[list[str]]:
    return [[name, _ci(f["return_ci"], 2), _ci(f["sharpe_ci"], 1)] for name, f, _ in _runs(card)]


def result_na_lines(card: dict[str, Any]) -> list[str]:
    """Why each n/a cell of the results reads n/a, one line per reason and the runs it holds
    for (only a Sharpe Ratio can be n/a there)."""
    runs = _runs(card)
    return _na_lines(
        "Sharpe Ratio", [(n, f["sharpe_na"]) for n, f, _ in runs if f["sharpe"] is None]
    )


def interval_na_lines(card: dict[str, Any]) -> list[str]:
    """Why each n/a interval reads n/a; none when no run was resampled, which `result_notes`
    says once for all."""
    if card["intervals"]["na"]:
        return []
    runs = _runs(card)
    return [
        *_na_lines("Return [%] 95% interval", [(n, f["return_ci"]["na"]) for n, f, _ in runs]),
        *_na_lines("Sharpe 95% interval", [(n, f["sharpe_ci"]["na"]) for n, f, _ in runs]),
    ]


def _na_lines(column: str, cells: list[tuple[str, str | None]]) -> list[str]:
    runs: dict[str, list[str]] = {}
    for name, why in cells:
        if why:
            runs.setdefault(why, []).append(name)
    return [f"n/a {column} ({', '.join(names)}): {why}" for why, names in runs.items()]


def result_notes(card: dict[str, Any]) -> list[str]:
    agent, iv = card["agent"], card["intervals"]
    cost = card["llm_cost_usd"]
    lines = [
        f"fees ${agent['fees_usd']:,.2f} and slippage are in every run's fills; model cost "
        + (f"${cost:,.4f}" if cost is not None else f"n/a: {card['llm_cost_na']}")
    ]
    random = card["baselines"].get("random_entry")
    if random:
        m = random["matched"]
        entries = (
            ", ".join(
                f"{s} {n}" + (f", {m['fit'][s]} fit without overlap" if m["fit"][s] < n else "")
                for s, n in m["entries"].items()
            )
            or "none"
        )
        low, high = random["return_range"]
        lines.append(
            f"random_entry: the median of {len(random['seeds'])} seeds (returns {_num(low, 2)} "
            f"to {_num(high, 2)} %), matched to the agent's entries ({entries}) and "
            f"holding time ({m['hold_bars']} bars)"
        )
    if iv["na"]:
        lines.append(f"intervals n/a: {iv['na']}")
    else:
        # Unpriced, the agent's intervals leave out its model cost: say so where they are compared.
        who = "agent" if agent["net_return_pct"] is not None else "agent (gross)"
        lines.append(f"95% intervals: {iv['basis']}")
        lines.append(
            f"P({who} beats buy_and_hold) {_num(iv['p_beats_buy_and_hold'], 3)}, "
            f"P({who} beats random_entry) {_num(iv['p_beats_random'], 3)}"
        )
    return lines


def ledger_columns(card: dict[str, Any]) -> list[str]:
    return [
        "reason",
        "vetoed",
        "clamped",
        *(f"saved {h}" for h in card["veto_ledger"]["horizons"]),
    ]


def ledger_rows(card: dict[str, Any]) -> list[list[str]]:
    ledger = card["veto_ledger"]
    horizons = ledger["horizons"]

    def saved(entry: dict[str, Any], h: str) -> str:
        waiting = entry.get("still_open", {}).get(h)
        return f"{entry['saved_usd'][h]:,.2f}" + (f" ({waiting} open)" if waiting else "")

    rows = [
        [code, str(e["vetoed"]), str(e["clamped"]), *(saved(e, h) for h in horizons)]
        for code, e in ledger["by_code"].items()
    ]
    total = ledger["total_saved_usd"]
    rows.append(["total", "", "", *(f"{total[h]:,.2f}" for h in horizons)])
    return rows


def calibration_rows(card: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{g['low']:.2f}–{g['high']:.2f}",
            str(g["decisions"]),
            f"{g['mean_confidence']:.2f}",
            f"{g['hit_rate']:.2f}",
        ]
        for g in card["calibration"]["groups"]
    ]


def calibration_line(card: dict[str, Any]) -> str:
    cal = card["calibration"]
    if cal["na"]:
        return f"calibration n/a: {cal['na']}"
    return (
        f"calibration: {cal['decisions']} buy/sell/close decisions scored on the {cal['horizon']} "
        f"move from the next open; Brier score {cal['brier']:.4f} (0 is perfect, 0.25 is a coin)"
    )


def comparison_title(paired: dict[str, Any]) -> str:
    return f"paired A/B: {paired['variant']} on the same decision points"


def comparison_rows(paired: dict[str, Any]) -> list[list[str]]:
    """`--compare` as (what, value) rows; agreement as a share of the decision points."""
    ci = paired["difference_ci"]
    total = paired["run_total"]
    figures = (
        {"comparison": f"n/a: {paired['na']}"}
        if paired.get("na")
        else {
            "same signal / same verdict": f"{_share(paired['signal_agreement'])} / "
            f"{_share(paired['verdict_agreement'])}",
            "net return [%] base / variant": f"{paired['base_net_return_pct']:.4f} / "
            f"{paired['variant_net_return_pct']:.4f}",
            "difference [%] (95% interval)": f"{paired['difference_pct']:.4f} ("
            + (f"n/a: {ci['na']}" if ci["na"] else f"{ci['low']:.4f} to {ci['high']:.4f}")
            + ")",
            "P(variant better)": _num(paired["p_variant_better"], 3),
        }
    )
    rows = {
        "decision points": f"{paired['decision_points']:,}",
        **figures,
        "variant model calls (new requests)": f"{paired['variant_model_calls']:,} "
        f"({paired['variant_requests_sent']:,})",
        "variant tokens in / out": f"{paired['variant_prompt_tokens']:,} / "
        f"{paired['variant_completion_tokens']:,}",
        "variant cost [$]": _num(paired["variant_cost_usd"], 4),
        "run total, base + variant: calls / cost [$]": f"{total['model_calls']:,} / "
        + _num(total["cost_usd"], 4),
    }
    if paired.get("cost_na"):
        rows["returns before model cost"] = f"cost n/a: {paired['cost_na']}"
    return [[name, value] for name, value in rows.items()]


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.3g}%"
