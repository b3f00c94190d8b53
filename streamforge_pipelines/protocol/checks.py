"""The value checks every data record shares: decimal strings, store integers, header texts, and how
a refused value is quoted.

What a data record may hold is what the store can hold: the connector writes what decodes, so
anything the store would refuse (an int beyond SQLite's INTEGER: OverflowError) or store as if it
were right (a NaN price, high < low) is refused, with a one-line reason naming the field.

Two kinds of check live here, used by each page codec (:mod:`.candles`, :mod:`.trades`): exact ones
on one value (``*_problem``: the reason, or None) that name the culprit, and bulk ones over a page's
columns joined into ASCII bytes (:func:`joined`, :func:`joined_decimals`, :func:`joined_positive`),
C-level passes that clear a valid page at a fraction of the cost of a regex match per value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..intervals import INTERVALS
from .errors import ProtocolError, excerpt

#: Largest time, id or count a data record may carry: SQLite's INTEGER is a signed 64-bit number.
MAX_RECORD_INT = 2**63 - 1
#: Most digits a decimal string (price, volume, quantity) has before and after its point, so at most
#: 41 characters: the exchange writes 8 decimals and at most about 12 digits before the point.
MAX_DECIMAL_DIGITS = 20
#: Longest ``source`` / ``queue_id`` of a data record (as a command's, :data:`~.commands.MAX_ID_CHARS`).
MAX_RECORD_ID_CHARS = 200
#: The exchange's decimal strings: ASCII digits, then optionally a point and ASCII digits
#: (``"67890.12000000"``, ``"0.00000000"``, ``"7"``); no sign, exponent, NaN, spaces or separators.
DECIMAL_PATTERN = rf"[0-9]{{1,{MAX_DECIMAL_DIGITS}}}(?:\.[0-9]{{1,{MAX_DECIMAL_DIGITS}}})?"
#: An exchange symbol (a command's ``symbol`` is upper-cased before it is matched).
SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
#: What the reason of an out-of-range integer expects.
INT_RANGE = "an integer from 0 to 2**63-1"
_DECIMAL = re.compile(DECIMAL_PATTERN)
_NONZERO_DIGIT = re.compile(r"[1-9]")
_KNOWN_INTERVALS = frozenset(INTERVALS)
_ASCII_DIGITS = b"0123456789"


def shape_table(point: bytes) -> bytes:
    """A ``bytes.translate`` table: ASCII digits to ``0``, ``,`` kept, ``.`` to ``point``, else ``x``."""
    table = bytearray(b"x" * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    table[ord(",")] = ord(",")
    table[ord(".")] = point[0]
    return bytes(table)


#: The shape of joined decimals with points as ``,`` (``"67890.12"`` -> ``"00000,00"``).
_FLAT_SHAPE = shape_table(b",")
_LONG_RUN = b"0" * (MAX_DECIMAL_DIGITS + 1)


def show(value: Any) -> str:
    """A bounded quote of a refused value: :func:`excerpt`, but a container by its size and a huge
    int by its bits (their ``repr`` can be long or fail)."""
    if isinstance(value, list | dict):
        return f"a {type(value).__name__} of {len(value)}"
    if type(value) is int and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    return excerpt(value)


def got(value: Any) -> str:
    return f"{type(value).__name__} {show(value)}"


def text_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``symbol`` / ``interval`` / ``source`` / ``queue_id`` of a data
    record (a non-empty str; an exchange symbol; a known interval; bounded), or None."""
    if type(value) is not str or not value:
        return f"expected a non-empty str, got {got(value)}"
    if name == "symbol" and not SYMBOL.fullmatch(value):
        return f"expected an exchange symbol like BTCUSDT (2-20 of A-Z, 0-9), got {excerpt(value)}"
    if name == "interval" and value not in _KNOWN_INTERVALS:
        return f"expected one of {', '.join(INTERVALS)}, got {excerpt(value)}"
    if len(value) > MAX_RECORD_ID_CHARS:
        return f"expected at most {MAX_RECORD_ID_CHARS} characters, got {excerpt(value)}"
    return None


def int_problem(value: int) -> str | None:
    """Why a time, id or count (already an int) does not fit the store, or None."""
    return None if 0 <= value <= MAX_RECORD_INT else f"expected {INT_RANGE}, got {show(value)}"


def decimal_problem(value: str, *, positive: bool) -> str | None:
    """Why ``value`` (already a str) is not a :data:`DECIMAL_PATTERN` decimal string (and, for a
    price, above zero), or None."""
    if not _DECIMAL.fullmatch(value):
        sign = "positive" if positive else "non-negative"
        return (
            f"expected a {sign} decimal string like 67890.12000000 (at most {MAX_DECIMAL_DIGITS} digits "
            f"before and after the point), got {excerpt(value)}"
        )
    if positive and not _NONZERO_DIGIT.search(value):
        return f"expected a positive price, got {excerpt(value)}"
    return None


def record_header(kind: str, value: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    """The header strings of a page (``symbol``, ``interval`` / ``kind``, ``source``, ``queue_id``),
    each checked by :func:`text_problem`; a :class:`ProtocolError` naming the first bad one."""
    out = []
    for name in names:
        v = value.get(name)
        if (problem := text_problem(name, v)) is not None:
            raise ProtocolError(f"{kind}.{name}: {problem}")
        out.append(v)
    return out


def joined_decimals(joined: bytes) -> bool:
    """Whether every field of ``joined`` (strings joined by ``,``, ASCII) matches
    :data:`DECIMAL_PATTERN`, in a few C-level passes instead of a regex match per value: with digits
    as ``0`` and points as ``,`` only ``0`` and ``,`` remain, never two ``,`` in a row nor one at
    either end (no empty field, a point only between digits), no run of more than
    :data:`MAX_DECIMAL_DIGITS` digits; without its digits, no field has two points."""
    flat = joined.translate(_FLAT_SHAPE)
    return (
        b"x" not in flat
        and b",," not in flat
        and flat[:1] == b"0"
        and flat[-1:] == b"0"
        and _LONG_RUN not in flat
        and b".." not in joined.translate(None, _ASCII_DIGITS)
    )


def joined_positive(joined: bytes) -> bool:
    """Whether no field of ``joined`` (decimals joined by ``,``) is zero: each keeps a digit 1-9."""
    nonzero = joined.translate(None, b"0.")
    return b",," not in nonzero and nonzero[:1] not in (b"", b",") and nonzero[-1:] != b","


def joined(column: Iterable[Any]) -> bytes | None:
    """Page column(s) of strings joined by ``,`` as ASCII bytes; None if one is not an ASCII str."""
    try:
        return ",".join(column).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None


def build_page(record: str, header: dict[str, str], rows: Any) -> dict[str, Any]:
    """A data page: ``{"record": <kind>, <header fields>..., "rows": [...]}`` (what a loader produces
    and :func:`record_header` reads back)."""
    return {"record": record, **header, "rows": rows}
