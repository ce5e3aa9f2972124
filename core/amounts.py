"""Bounds on amounts a person types, so every figure a report derives from them stays exact."""

MAX_CASH = 1e12
"""A trillion in the quote currency: more than any account holds, and far inside the range
where a float keeps cents (to ~7e13). `--cash 1e308` made every figure of a report overflow
or round to nothing (a 0% return at 57% exposure)."""
