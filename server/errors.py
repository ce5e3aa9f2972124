"""Bad input is a 4xx whose JSON body names the field; nothing the API returns is a traceback."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from core.errors import UserError
from server.models import Problem
from store.outage import unreachable

T = TypeVar("T")


class BadField(Exception):
    """A value the API refuses; `field` is the query, path or body field at fault."""

    def __init__(self, field: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.field, self.detail, self.status = field, detail, status


def checked(field: str, parse: Callable[..., T], *args: object) -> T:
    """`parse(*args)`, with a UserError turned into a BadField naming `field`."""
    try:
        return parse(*args)
    except UserError as exc:
        raise BadField(field, str(exc)) from None


def _problem(status: int, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    body = Problem(detail=detail, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


def _whole_body(first: dict) -> str | None:
    """What is wrong with the body as a whole, when that is the error (pydantic's words name
    a JSON decoder's offset, or no field, there)."""
    kind, loc = first.get("type"), tuple(first.get("loc", ()))
    if kind == "json_invalid":
        why = (first.get("ctx") or {}).get("error")
        return f"the body is not valid JSON{f' ({why})' if why else ''}"
    if loc != ("body",):
        return None
    if kind == "missing":
        return "a body is required: a JSON object ({} takes every default)"
    return "the body must be a JSON object"


def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    whole = _whole_body(first)
    if whole is not None:
        return _problem(422, whole, "body")
    loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = "not a field this request takes"
    return _problem(422, f"{field}: {message}" if field else message, field)


def _bad_field(_: Request, exc: BadField) -> JSONResponse:
    return _problem(exc.status, exc.detail, exc.field)


def _http(_: Request, exc: HTTPException) -> JSONResponse:
    return _problem(exc.status_code, str(exc.detail), None, **(exc.headers or {}))


def _store_error(_: Request, exc: Exception) -> JSONResponse:
    """A store out of reach is a 503 a client may retry; any other database error is our bug,
    left to be the server's 500 with its traceback in the log."""
    why = unreachable(exc)
    if why is None:
        raise exc
    said = (str(why).strip().splitlines() or [type(why).__name__])[0][:200]
    return _problem(503, f"the store (database) is unavailable: {said}")


def _internal(_: Request, exc: Exception) -> JSONResponse:
    """Our own bug: a Problem like any other error, naming no more than the kind (the server
    logs the traceback); a client never parses a plain-text page."""
    return _problem(
        500, f"internal error ({type(exc).__name__}): the server's log has its traceback"
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(sqlite3.Error, _store_error)
    app.add_exception_handler(DBAPIError, _store_error)
    if importlib.util.find_spec("psycopg") is not None:  # PostgreSQL's driver, when installed
        import psycopg

        app.add_exception_handler(psycopg.Error, _store_error)
    app.add_exception_handler(BadField, _bad_field)
    app.add_exception_handler(HTTPException, _http)
