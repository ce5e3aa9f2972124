"""Every verdict in the recorded corpus is still the gate's verdict: a faster gate must not
approve, veto, size or explain a single case differently."""

from __future__ import annotations

from tests.gate_corpus import NOW, load, verdict_of


def test_every_recorded_verdict_is_unchanged() -> None:
    corpus = load()
    changed = [
        (case["signal"]["decision_id"], case["verdict"], now)
        for case in corpus
        if (now := verdict_of(case)) != case["verdict"]
    ]
    assert not changed, f"{len(changed)} of {len(corpus)} verdicts changed; first: {changed[0]}"


def test_the_corpus_covers_approvals_and_vetoes_of_every_kind() -> None:
    corpus = load()
    kinds = {case["verdict"]["kind"] for case in corpus}
    codes = {
        reason["code"]
        for case in corpus
        for reason in case["verdict"].get("reasons", []) + case["verdict"].get("adjustments", [])
    }
    assert kinds == {"approved", "vetoed"}
    assert len(codes) >= 30
    assert all(case["signal"]["created_ms"] == NOW for case in corpus)
