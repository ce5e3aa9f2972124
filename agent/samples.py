"""Asking the model K times per decision (`--samples K`). Each sample is the same graph on the
same inputs; the action most samples voted for decides, and the share that voted for it is the
decision's agreement, which the gate can size by (`risk.size_by_agreement`, docs/risk.md).

Sample 0 is cached under the decision's own key, so it is the answer a one-sample run gets;
sample k > 0 under the prompt version plus `+s{k}`, so a rerun replays every sample and a
model at temperature 0 is not simply asked the cached question again. A tie goes to the
earliest sample among the tied actions; its agreement is then at most 1/2, below the default
floor, so with `size_by_agreement` a tie cannot open a position."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

ABSTAIN = "abstain"  # a failed or empty sample votes for doing nothing it could be blamed for


class Vote(BaseModel):
    samples: int
    votes: dict[str, int]
    action: str
    agreement: float = Field(gt=0, le=1)
    chosen: int  # the sample whose answer the decision uses (the first with the majority action)


def sample_version(prompt_version: str, index: int) -> str:
    """The prompt version that keys sample `index` in the cache (sample 0 keeps the decision's)."""
    return prompt_version if index == 0 else f"{prompt_version}+s{index}"


def action_of(state: dict[str, Any]) -> str:
    signal = state.get("signal")
    if state.get("abstain") or not signal:
        return ABSTAIN
    return str(signal["action"])


def vote(states: list[dict[str, Any]]) -> Vote:
    """The majority action over the samples, in sample order for ties."""
    actions = [action_of(s) for s in states]
    counts = Counter(actions)
    top = max(counts.values())
    chosen = next(i for i, a in enumerate(actions) if counts[a] == top)
    return Vote(
        samples=len(states),
        votes=dict(sorted(counts.items())),
        action=actions[chosen],
        agreement=top / len(states),
        chosen=chosen,
    )


def merged_record(states: list[dict[str, Any]], chosen: Vote, version: str) -> dict[str, Any]:
    """The chosen sample's record, carrying every sample's model calls (so tokens and cost count
    all K) and the vote; the prompt version is the decision's, not the sample's cache key."""
    record = dict(states[chosen.chosen]["record"])
    record["llm_calls"] = [c for s in states for c in s["record"].get("llm_calls", [])]
    record["prompt_version"] = version
    record["samples"] = chosen.model_dump()
    return record
