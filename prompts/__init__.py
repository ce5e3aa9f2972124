"""Prompt templates as text files; a prompt's version is the hash of its text, so every cache key
and decision record names exactly the words the model was given."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    def render(self, **values: object) -> str:
        """Fill `$name` placeholders; a missing value is a bug, so it raises KeyError."""
        return Template(self.text).substitute({k: str(v) for k, v in values.items()})


@cache
def load_prompt(name: str) -> Prompt:
    text = (resources.files("prompts") / f"{name}.txt").read_text(encoding="utf-8")
    return Prompt(name, text)


def prompt_version(*names: str) -> str:
    """One version for the set of templates a run uses (system plus decision, say)."""
    joined = "|".join(f"{n}={load_prompt(n).version}" for n in sorted(names))
    return hashlib.sha256(joined.encode()).hexdigest()[:12]
