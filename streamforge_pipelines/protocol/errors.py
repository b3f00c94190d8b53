"""The protocol's one error and how an error line quotes what it refuses.

Every module of the package raises :class:`ProtocolError` with a one-line message naming the field;
:func:`excerpt` bounds the part of a refused value that line quotes, and :func:`json_object` is the
first step of every decoder (commands, events, data records), so "not JSON" reads the same for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

#: An error line quotes at most this many characters of the value it refuses (:func:`excerpt`).
EXCERPT_CHARS = 60


class ProtocolError(ValueError):
    """A message that does not follow the protocol. ``str(err)`` is one line naming the field."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters and marked ``… (N chars)`` when longer: an error
    line quotes a bounded part of what it refuses (a 1 MB field is not echoed back)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}… ({size} chars)"


def json_object(kind: str, raw: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or a one-line :class:`ProtocolError` saying why not."""
    if isinstance(raw, bytes | str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{kind}: not valid JSON ({exc})") from None
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{kind}: expected a JSON object, got {type(raw).__name__}")
    return dict(raw)
