"""Gradio's process-wide settings, made by importing this module before Gradio (agent-ui, and
agent-server's /ui): no usage reports, and no type-stub writing at import.

Gradio's ComponentMeta regenerates each component class's `.pyi` stub, an editor's aid for
people developing Gradio, every time the class is defined: it reads and parses the source of
every component module, then reads, compares and may rewrite the stub beside it in the
installed package. That was about 2 s of CPU in every start of the chat, half of importing
Gradio. A finder lets `gradio.component_meta` load as it is, then makes that one step do
nothing; nothing Gradio serves depends on it. Should a Gradio release rename the step, the
start is slower again and nothing else changes."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

_STUB_WRITER_MODULE = "gradio.component_meta"
_STUB_WRITER = "create_or_modify_pyi"


def _write_no_stub(*_args: object) -> None:
    return None


class _NoStubWriting(importlib.abc.MetaPathFinder):
    """Finds `gradio.component_meta` where Python would, once, and loads it unchanged except
    for the stub writer."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _STUB_WRITER_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = None if spec is None else spec.loader
        load = getattr(loader, "exec_module", None)
        if load is None:  # not found here, or an unusual loader: imported as Python would
            return spec

        def exec_module(module: ModuleType) -> None:
            load(module)
            if hasattr(module, _STUB_WRITER):
                setattr(module, _STUB_WRITER, _write_no_stub)

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return spec


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a trading desk keeps quiet
if _STUB_WRITER_MODULE not in sys.modules:  # imported after Gradio: too late, and harmless
    sys.meta_path.insert(0, _NoStubWriting())
