"""Building frozen models from values the gate already checked, without running validation:
on the gate's hot path pydantic's re-validation of its own outputs was most of the cost."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
# BaseModel's own slot setters, called directly: object.__setattr__ would look each name up first.
_slots = BaseModel.__dict__
_set_dict = _slots["__dict__"].__set__
_set_fields_set = _slots["__pydantic_fields_set__"].__set__
_set_extra = _slots["__pydantic_extra__"].__set__
_set_private = _slots["__pydantic_private__"].__set__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """The model `cls(**values)` would give, for `values` that hold every field in declaration
    order, each already of its field's type (the tests compare the two)."""
    model = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, set(values))
    _set_extra(model, None)
    _set_private(model, None)
    return model
