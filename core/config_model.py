"""The base of every settings model: pydantic's lax mode reads a TOML `true` as 1.0 (or 1) in a
number field, so `max_position_pct = true` would pass as a 100% limit. A number field takes an
int or a float, never a boolean; an environment variable's "true" was already refused."""

from __future__ import annotations

import functools
from typing import Any, get_args

from pydantic import BaseModel, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


def _types(annotation: Any) -> set[Any]:
    """Every type an annotation admits, through unions, Optional and Annotated."""
    args = get_args(annotation)
    if not args:
        return {annotation}
    return {annotation, *(t for arg in args for t in _types(arg))}


@functools.cache
def number_only(model: type[BaseModel], name: str) -> bool:
    """Whether `model`'s field `name` takes numbers and no boolean (a tool's input too)."""
    admitted = _types(model.model_fields[name].annotation)
    return bool(admitted & {int, float}) and bool not in admitted


class ConfigModel(BaseModel):
    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name and number_only(cls, info.field_name):
            raise PydanticCustomError(
                "number_not_bool", "Input should be a number, not true or false"
            )
        return value
