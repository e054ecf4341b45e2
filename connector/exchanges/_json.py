"""Exchange JSON without floats, shared by every venue package.

Exchanges mostly quote their numbers, but not always; an unquoted ``66000.5`` must never pass
through a float on the way in, nor be re-quoted on the way out to the audit ``raw`` field.
Payloads are decoded at the boundary into msgspec Structs (:func:`decoder`) that keep the
venue's field names; each order's own JSON is kept as ``msgspec.Raw`` (:func:`raw_text`).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, TypeVar, cast

import msgspec

from ..errors import MalformedResponse

T = TypeVar("T")


# --- typed decoding at the boundary (msgspec) ------------------------------------------------


class DecimalText(str):
    """A decimal exactly as the exchange wrote it, quoted (``"0.10"``) or bare (``0.10``).

    Struct fields of this type accept both; the text is kept as is (placeholders such as ``""``
    or ``NULL_VAL`` included) and :func:`connector.model.decimal_or_none` makes the exact
    ``Decimal``. A bare number never passes through a float: the decoder reads it as ``Decimal``.
    """

    __slots__ = ()


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is DecimalText:
        if isinstance(obj, str | int | Decimal) and not isinstance(obj, bool):
            return DecimalText(obj)
        raise ValueError(f"expected a decimal, got {type(obj).__name__}")
    raise NotImplementedError(type_)


def decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    """A JSON decoder into ``type_`` (a Struct, a list of Structs, ``msgspec.Raw``...)."""
    return msgspec.json.Decoder(type_, dec_hook=_dec_hook, float_hook=Decimal)


def raw_text(raw: msgspec.Raw) -> str:
    """The exchange's own JSON text of one value, exactly as it was sent."""
    return bytes(raw).decode("utf-8")


@functools.lru_cache(maxsize=64)
def _cached_decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return decoder(type_)


def decode(type_: type[T], data: bytes | str | msgspec.Raw, where: str) -> T:
    """Decode one payload into ``type_``; anything unreadable is a MalformedResponse naming the
    place (msgspec's message gives the path and the expected type, never the value)."""
    try:
        result: T = _cached_decoder(cast(Any, type_)).decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedResponse(f"{where}: {exc}") from None
    return result
