"""Building frozen models from values the gate already checked, without running validation:
on the gate's hot path pydantic's re-validation of its own outputs was most of the cost."""

from __future__ import annotations

from typing import Any, Final, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_new: Final = object.__new__
# BaseModel's own slot setters, called directly: object.__setattr__ would look each name up first.
_slots: Final = BaseModel.__dict__
_set_dict: Final = _slots["__dict__"].__set__
_set_fields_set: Final = _slots["__pydantic_fields_set__"].__set__
_set_extra: Final = _slots["__pydantic_extra__"].__set__
_set_private: Final = _slots["__pydantic_private__"].__set__
_every_field: Final[dict[type[BaseModel], set[str]]] = {}


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """The model `cls(**values)` would give, for `values` that hold every field in declaration
    order, each already of its field's type (the tests compare the two)."""
    model = _new(cls)
    _set_dict(model, values)
    _set_fields_set(model, _every_field.get(cls) or _fields_set(cls, values))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def _fields_set(cls: type[BaseModel], values: dict[str, Any]) -> set[str]:
    """Every field is set, so a frozen model, whose set pydantic never changes in place
    (copies copy it first), shares one per class: a backtest keeps hundreds of thousands of
    these models, and a set each was a quarter of the objects the collector scans."""
    if not cls.model_config.get("frozen"):
        return set(values)
    shared = _every_field[cls] = set(cls.model_fields)
    return shared
