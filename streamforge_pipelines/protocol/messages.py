"""What the pydantic messages (commands and events) share: the base model, its JSON encoding, and
the one-line rendering of a pydantic validation error.

:func:`one_line` turns pydantic's list of problems into ``command.<field>: <reason>, got <excerpt>``
(at most a few problems, each value quoted by :func:`~.errors.excerpt`); a validator that checks
several fields raises :class:`Refused` to name the one it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import EXCERPT_CHARS, ProtocolError, excerpt, json_object


class Message(BaseModel):
    """A message on ``queue-control`` or ``queue-events``: frozen, unknown fields ignored (a newer
    writer's additions do not break an older reader), JSON without its unset fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


class Refused(ValueError):
    """A validator's reason, naming the field it is about (``ranges[2]``) and the value it refuses.

    Pydantic keeps the exception in the error's context, so :func:`one_line` can name that field even
    for a check of the whole command, whose error pydantic itself locates nowhere.
    """

    def __init__(self, field: str, reason: str, value: Any = ...) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value


#: An error line names at most this many problems of one message, then how many more there are.
_MAX_PROBLEMS = 3


def _where(loc: tuple[int | str, ...]) -> str:
    """``ranges[0][1]`` for pydantic's ``("ranges", 0, 1)``; bounded (an unknown field's name can be long)."""
    out = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<message>"
    return out if len(out) <= EXCERPT_CHARS else f"{out[:EXCERPT_CHARS]}…"


def one_line(kind: str, exc: ValidationError) -> str:
    """``command.<field>: <reason>, got <excerpt>`` per problem, ``; ``-joined: one bounded line."""
    parts = []
    errors = exc.errors()
    for err in errors[:_MAX_PROBLEMS]:
        loc, got = _where(err["loc"]), err.get("input", ...)
        msg = err["msg"].removeprefix("Value error, ")
        refused = (err.get("ctx") or {}).get("error")
        if isinstance(refused, ProtocolError):  # Command.__init__'s line (validation calls __init__)
            parts.append(str(refused))
            continue
        if isinstance(refused, Refused):  # a check of several fields names the one it is about
            loc, msg, got = refused.field, str(refused), refused.value
        if err["type"] == "missing":
            parts.append(f"{kind}.{loc}: required field is missing")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{kind}.{loc}: unknown field, got {excerpt(got)}")
        elif got is ...:
            parts.append(f"{kind}.{loc}: {msg[:300]}")
        else:
            parts.append(f"{kind}.{loc}: {msg[:300]}, got {excerpt(got)}")
    if len(errors) > _MAX_PROBLEMS:
        parts.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(parts)


def decode_message(kind: str, model: type[Message], raw: bytes | str | Mapping[str, Any]) -> Any:
    """``raw`` as a ``model``; a one-line :class:`ProtocolError` (``<kind>.<field>: ...``) if not."""
    value = json_object(kind, raw)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ProtocolError(one_line(kind, exc)) from None
