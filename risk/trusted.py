"""Building frozen models from values the gate already checked, without running validation:
on the gate's hot path pydantic's re-validation of its own outputs was most of the cost."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
_set = object.__setattr__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """The model `cls(**values)` would give, for `values` that hold every field in declaration
    order, each already of its field's type (the tests compare the two)."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
