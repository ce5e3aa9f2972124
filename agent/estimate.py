"""What an LLM run will cost, said before it spends: from the tokens this model actually used on
this prompt version in past decisions when the store has them, else from the run's own first
request counted with a real tokenizer. A price is shown only where the model's `Pricing` knows
one (llm.prices, for a model it names, at llm.prices_host); anywhere else it is n/a with the
reason."""

from __future__ import annotations

import json

from pydantic import BaseModel

from agent.decide import decision_text
from agent.graph import request_shape
from agent.llm import ASSUMED_REPLY_TOKENS
from agent.model import ChatModel
from agent.tokens import request_tokens
from config.settings import LLMSettings
from risk.limits import RiskLimits
from store.db import Store
from tools import MarketData, ToolEnv, ToolRegistry, flat_portfolio

SAMPLE_SYMBOL = "BTCUSDT"
HISTORY = 200  # the latest decisions that give the per-decision figures


class PerDecision(BaseModel):
    """Model calls and tokens of one decision, and where the figures come from."""

    calls: float
    prompt_tokens: float
    completion_tokens: float
    basis: str


def from_history(store: Store, model: ChatModel, prompt_version: str) -> PerDecision | None:
    """The mean over this model's latest decisions on this endpoint and prompt version that
    reached the model (an abstain before any answer has no tokens to learn from)."""
    rows = store.rows(  # plain SQL: the estimate loads no SQLAlchemy beside the model calls
        "SELECT record_json FROM decisions WHERE model = ? AND base_url = ? "
        "AND prompt_version = ? AND mode = 'decide' ORDER BY decided_ms DESC LIMIT ?",
        (model.model, model.base_url, prompt_version, HISTORY),
    )
    calls = [json.loads(raw)["llm_calls"] for (raw,) in rows]
    answered = [c for c in calls if c]
    if not answered:
        return None
    n = len(answered)
    return PerDecision(
        calls=sum(len(c) for c in answered) / n,
        prompt_tokens=sum(x["prompt_tokens"] for c in answered for x in c) / n,
        completion_tokens=sum(x["completion_tokens"] for c in answered for x in c) / n,
        basis=f"as the model counted them in {n:,} past decisions with this prompt",
    )


def from_request(
    env: ToolEnv, symbol: str, tools: ToolRegistry, system: str, llm: LLMSettings, basis: str
) -> PerDecision:
    """One call per decision (the prompt carries the snapshot): the request a decision about
    `symbol` at `env.now_ms` sends, counted; the reply assumed, within the caps on replies.
    `probe` is counted as `tools`, the default and the largest request."""
    form = "tools" if llm.decision_format == "probe" else llm.decision_format
    schemas, options = request_shape(form, tools, symbol)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": decision_text(env, symbol)},
    ]
    caps = [c for c in (llm.max_output_tokens, options.get("max_tokens")) if c is not None]
    return PerDecision(
        calls=1,
        prompt_tokens=request_tokens(messages, schemas, options),
        completion_tokens=min([ASSUMED_REPLY_TOKENS, *caps]),
        basis=f"{basis} counted with tiktoken cl100k_base, the reply assumed",
    )


def from_sample(
    tools: ToolRegistry, system: str, llm: LLMSettings, cash: float, limits: RiskLimits
) -> PerDecision:
    """A trading loop has no bars before it starts: its decision prompt is counted on the
    bundled BTCUSDT sample's last bar, with a flat account (a snapshot's size hardly depends on
    the symbol)."""
    from market.sample import load_sample, sample_rules

    bars = load_sample(SAMPLE_SYMBOL)
    env = ToolEnv(
        market=MarketData({SAMPLE_SYMBOL: bars}, "1m"),
        now_ms=int(bars["close_time"].iloc[-1]),
        rules=sample_rules(),
        portfolio=flat_portfolio(cash),
        limits=limits,
        stateful=False,
    )
    return from_request(env, SAMPLE_SYMBOL, tools, system, llm, "a decision prompt on the sample")


def usd_text(usd: float) -> str:
    """Dollars to the cent, or to 4 significant digits under a cent: a cheap run's estimate
    must not read $0.00 and then cost $0.0033."""
    return f"{usd:,.2f}" if usd >= 0.01 or usd == 0 else f"{usd:.4g}"


def estimate_line(
    model: ChatModel,
    per: PerDecision,
    decisions: int,
    samples: int = 1,
    period: str = "",
    cached: int = 0,
) -> str:
    """One line: decisions, calls and tokens, and the cost or n/a with its reason; `cached`
    decisions more, answered by the cache, are named but not counted."""
    asked = decisions * samples
    calls = round(asked * per.calls)
    prompt = round(asked * per.prompt_tokens)
    completion = round(asked * per.completion_tokens)
    usd = model.pricing.cost(prompt, completion)
    if usd is None:
        cost = f"cost n/a: {model.pricing.unknown}"
    else:
        cost = f"~${usd_text(usd)}{period} uncached (cached answers are free)"
    sampled = f" x {samples} samples" if samples > 1 else ""
    return (
        f"estimate: {decisions:,} decisions{period}{sampled} on {model.model}"
        + (f" ({cached:,} more cached, free)" if cached else "")
        + f", ~{calls:,} model "
        f"calls, ~{prompt:,} prompt + ~{completion:,} completion tokens "
        f"({per.calls:.2f} calls and {per.prompt_tokens:,.0f} + {per.completion_tokens:,.0f} "
        f"tokens per decision, {per.basis}); {cost}"
    )
