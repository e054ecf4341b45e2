"""Command in, output records out: the connector's logic, free of Kafka.

:meth:`Pipeline.process` never raises for anything a command or an exchange can do: every path
ends in exactly one QueryResult, preceded by the snapshot's OrderEvents (OK) or by one ErrorEvent
(FAILED). The worker only has to publish the :class:`Outcome` in order and wait for the acks.
The one exception is :class:`~connector.codec.RegistryUnavailable`: an outage, not a verdict on
the command, which the worker waits out and then processes the command again.

Every outcome leaves here *sanitized*: configured secrets are redacted from keys, headers and
every string of every value (a caller may paste a credential into ``request_id`` or ``symbol``),
and text is made safely encodable (lone surrogates escaped), so publishing can never raise a
``UnicodeEncodeError``. The echoed command is redacted *then* cut to
``error_command_max_bytes``, with its original length in ``command_size``.

One sick venue must not take the others down: every fetch passes the :class:`VenueGate`
(connector/venue_gate.py), which answers a disabled venue's commands VENUE_DISABLED and an open
circuit's VENUE_UNAVAILABLE at once, without calling the venue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from . import codec, logs
from .account import Accounts
from .codec import RegistryUnavailable
from .commands import RawCommand, decode_command, safe_text, validate_command
from .errors import (
    ConnectorError,
    ExchangeTimeout,
    Expired,
    InternalError,
    Unsupported,
)
from .exchanges.base import ExchangeAdapter
from .model import FetchResult, Order, OrderQuery, canonical_decimal, now_ms, seconds_hint
from .resilience import FetchCoalescer
from .resilience.breaker import CircuitBoard
from .secrets import (
    contains_secret,
    contains_secret_utf8,
    redact,
    redact_bytes,
    secrets_survive_json,
)
from .settings import Settings
from .venue_gate import VenueGate

log = logging.getLogger(__name__)
_json_encode = msgspec.json.Encoder().encode

Role = Literal["orders", "results", "errors"]
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class OutputRecord:
    role: Role
    key: str | None
    schema: str
    value: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Outcome:
    """Everything one command produces, in publishing order."""

    request_id: str
    exchange: str
    account: str
    ok: bool
    orders: list[OutputRecord] = field(default_factory=list)
    error: OutputRecord | None = None
    result: OutputRecord | None = None
    # For the state topic (connector/state.py): the validated command of an OK snapshot (its
    # scope) and when its fetch started (its version).
    query: OrderQuery | None = None
    started_at: int = 0

    def records(self) -> list[OutputRecord]:
        tail = [r for r in (self.error, self.result) if r is not None]
        return [*self.orders, *tail]


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        adapters: Mapping[str, ExchangeAdapter],
        serializer: codec.Serializer,
        *,
        circuits: CircuitBoard | None = None,
        disabled: Collection[str] | None = None,
    ) -> None:
        """``circuits``: the venues' circuit breakers (default: one board with each enabled
        venue's ``CONNECTOR_<VENUE>_CIRCUIT_*`` policy); ``disabled``: the venues switched off
        by configuration (default: the registry's ``CONNECTOR_<VENUE>_ENABLED=false``)."""
        self.settings = settings
        self.accounts = accounts
        self.adapters = adapters
        self.serializer = serializer
        # Identical commands waiting for the same rate-limited fetch share it (see
        # connector.resilience.coalesce).
        self.coalescer: FetchCoalescer[FetchResult] = FetchCoalescer()
        self.gate = VenueGate(adapters, accounts, circuits=circuits, disabled=disabled)

    async def process(
        self,
        value: bytes | None,
        *,
        timestamp_ms: int | None = None,
        decoded: RawCommand | None = None,
    ) -> Outcome:
        """One command -> its outcome. ``timestamp_ms`` is the Kafka record's timestamp, checked
        against ``command_max_age_s``; ``decoded`` is ``value`` already decoded (the worker
        decodes a command once to route it). Raises only RegistryUnavailable (an outage).

        Every log line of the command's work (adapters included) carries its ``request_id``,
        ``exchange`` and ``account`` through the log context (connector/logs.py)."""
        with logs.context():
            return await self._process(value, timestamp_ms, decoded)

    async def _process(
        self, value: bytes | None, timestamp_ms: int | None, decoded: RawCommand | None
    ) -> Outcome:
        started_at = now_ms()
        raw = RawCommand({})
        query: OrderQuery | None = None
        try:
            raw = decoded if decoded is not None else await self.decode(value)
            logs.bind(request_id=raw.request_id, exchange=raw.exchange, account=raw.account)
            query = validate_command(raw)
            logs.bind(request_id=query.request_id, exchange=query.exchange, account=query.account)
            self.gate.check_enabled(query.exchange)
            self._check_age(timestamp_ms)
            fetched = await self._fetch(query)
        except RegistryUnavailable:
            raise
        except ConnectorError as exc:
            return self._failed(raw, query, value, exc, started_at)
        except Exception as exc:  # a bug, not an input problem: report it, keep serving
            log.exception("internal error processing command", extra=_log_ctx(raw, query))
            internal = InternalError(f"internal error: {type(exc).__name__}")
            return self._failed(raw, query, value, internal, started_at)
        try:
            return self._ok(query, fetched, started_at)
        except Exception as exc:
            log.exception("internal error building outputs", extra=_log_ctx(raw, query))
            internal = InternalError(f"internal error: {type(exc).__name__}")
            return self._failed(raw, query, value, internal, started_at)

    async def decode(self, value: bytes | None) -> RawCommand:
        """A command record's value -> its fields, within the configured size and depth limits.
        Raises a ConnectorError (INVALID_COMMAND) or RegistryUnavailable."""
        return await decode_command(
            value,
            self.serializer,
            max_bytes=self.settings.command_max_bytes,
            max_depth=self.settings.command_max_depth,
        )

    def failure(self, value: bytes | None, exc: ConnectorError, *, echo: bool = True) -> Outcome:
        """A FAILED outcome for a command whose outputs could not be published as built (e.g.
        larger than the broker accepts); ``echo=False`` drops the command echo."""
        raw = RawCommand({})
        query: OrderQuery | None = None
        try:
            text = (
                value.decode("utf-8")
                if value and len(value) <= self.settings.command_max_bytes
                else ""
            )
            data = json.loads(text) if text.startswith("{") else {}
            raw = RawCommand(data if isinstance(data, dict) else {})
            query = validate_command(raw)
        except Exception:  # noqa: S110 - best effort: the ids only make the failure findable
            pass
        return self._failed(raw, query, value if echo else None, exc, now_ms())

    def _check_age(self, timestamp_ms: int | None) -> None:
        max_age = self.settings.command_max_age_s
        if not max_age or timestamp_ms is None or timestamp_ms <= 0:
            return
        age_s = (now_ms() - timestamp_ms) / 1000
        if age_s > max_age:
            raise Expired(
                f"command is {age_s:.0f}s old (record timestamp), over "
                f"CONNECTOR_COMMAND_MAX_AGE_S={max_age:g}"
            )

    async def _fetch(self, query: OrderQuery) -> FetchResult:
        if query.deadline_ms is not None and now_ms() > query.deadline_ms:
            raise Expired(
                f"deadline {query.deadline_ms} passed before the query started"
                + seconds_hint("deadline_ms", query.deadline_ms)
            )
        account = self.accounts.get(query.exchange, query.account)
        adapter = self.adapters.get(query.exchange)
        if adapter is None:
            raise Unsupported(f"exchange {query.exchange} is not enabled in this worker")
        # An open circuit answers here, without calling the venue.
        return await self.gate.run(
            query.exchange, adapter, account, lambda: self._call(adapter, account, query)
        )

    async def _call(self, adapter: ExchangeAdapter, account: Any, query: OrderQuery) -> FetchResult:
        budget = self.settings.command_timeout_s
        if query.deadline_ms is not None:
            budget = min(budget, (query.deadline_ms - now_ms()) / 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        try:
            # The adapter honours the deadline itself; the outer timeout is the backstop that
            # keeps a misbehaving exchange from holding a worker slot forever.
            async with asyncio.timeout(budget + 1.0):
                return await self.coalescer.run(
                    fetch_key(query),
                    lambda: adapter.fetch_open_orders(account, query, deadline=deadline),
                )
        except TimeoutError:
            raise ExchangeTimeout(
                f"no complete answer from {query.exchange} in {budget:.1f}s",
                # Silent past the command's whole budget and the adapter's own deadline.
                venue_down=budget >= self.settings.request_timeout_s,
            ) from None

    # --- building the records ----------------------------------------------------------------

    def _ok(self, query: OrderQuery, fetched: FetchResult, started_at: int) -> Outcome:
        observed_at = now_ms()
        ex, acc = query.exchange, query.account
        # One headers dict for the whole snapshot (records are never mutated; the worker
        # encodes it once for all of them).
        headers = {**_headers(query.request_id, ex, acc), "schema": codec.ORDER_EVENT}
        n = len(fetched.orders)
        outcome = Outcome(query.request_id, ex, acc, ok=True, query=query, started_at=started_at)
        event_ids = uuid4_batch(n)
        for seq, order in enumerate(fetched.orders, start=1):
            value = order_event(
                order, query, seq=seq, size=n, observed_at=observed_at, event_id=event_ids[seq - 1]
            )
            outcome.orders.append(
                OutputRecord(
                    "orders", f"{ex}:{acc}:{order.order_id}", codec.ORDER_EVENT, value, headers
                )
            )
        outcome.result = self._result(
            query.request_id, ex, acc, query.symbol, query.requested_at, started_at,
            status="OK", order_count=n, error_code=None, calls=fetched.calls,
        )  # fmt: skip
        return sanitize(outcome)

    def _failed(
        self,
        raw: RawCommand,
        query: OrderQuery | None,
        value: bytes | None,
        exc: ConnectorError,
        started_at: int,
    ) -> Outcome:
        request_id = query.request_id if query else raw.request_id or f"generated-{uuid.uuid4()}"
        ex = query.exchange if query else raw.exchange
        acc = query.account if query else raw.account
        key = f"{ex}:{acc}" if ex and acc else None
        message = safe_text(redact(exc.message))[:MAX_MESSAGE_CHARS]
        request_id = safe_text(redact(request_id))
        command, command_size = None, None
        if value is not None:
            command_size = len(value)
            command = redact_bytes(value)[: self.settings.error_command_max_bytes]
        log.warning(
            "command failed: %s %s",
            exc.code.value,
            message,
            extra={"request_id": request_id, "exchange": ex, "account": acc},
        )
        error_value = {
            "error_id": str(uuid.uuid4()),
            "request_id": request_id,
            "exchange": ex,
            "account": acc,
            "code": exc.code.value,
            "exchange_code": exc.exchange_code,
            "message": message,
            "retryable": exc.retryable,
            "attempts": exc.attempts,
            "occurred_at": now_ms(),
            "command": command,
            "command_size": command_size,
        }
        headers = _headers(request_id, ex or "", acc or "")
        outcome = Outcome(request_id, ex or "", acc or "", ok=False)
        outcome.error = OutputRecord(
            "errors", key, codec.ERROR_EVENT, error_value, {**headers, "schema": codec.ERROR_EVENT}
        )
        symbol = query.symbol if query else None
        requested_at = query.requested_at if query else None
        calls = exc.calls
        outcome.result = self._result(
            request_id, ex, acc, symbol, requested_at, started_at,
            status="FAILED", order_count=0, error_code=exc.code.value, calls=calls,
        )  # fmt: skip
        return sanitize(outcome)

    def _result(
        self,
        request_id: str,
        ex: str | None,
        acc: str | None,
        symbol: str | None,
        requested_at: int | None,
        started_at: int,
        *,
        status: str,
        order_count: int,
        error_code: str | None,
        calls: int,
    ) -> OutputRecord:
        value = {
            "request_id": request_id,
            "exchange": ex,
            "account": acc,
            "symbol": symbol,
            "status": status,
            "order_count": order_count,
            "error_code": error_code,
            "requested_at": requested_at,
            "started_at": started_at,
            "completed_at": now_ms(),
            "exchange_calls": calls,
        }
        key = f"{ex}:{acc}" if ex and acc else None
        headers = {**_headers(request_id, ex or "", acc or ""), "schema": codec.QUERY_RESULT}
        return OutputRecord("results", key, codec.QUERY_RESULT, value, headers)


def fetch_key(query: OrderQuery) -> tuple[str, str, str | None, str, str]:
    """What makes two commands the same exchange request: venue, account, symbol, options."""
    options = query.options
    return (
        query.exchange,
        query.account,
        query.symbol,
        type(options).__qualname__,
        options.model_dump_json(),
    )


def uuid4_batch(n: int) -> list[str]:
    """``n`` random (version 4, RFC 4122 variant) UUID strings from one ``os.urandom`` call:
    the same randomness as ``uuid.uuid4()``, a quarter of its cost on a 1,000-order snapshot."""
    hexes = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = hexes[i : i + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return out


def order_event(
    order: Order,
    query: OrderQuery,
    *,
    seq: int,
    size: int,
    observed_at: int,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Normalized order + request context -> the OrderEvent record (decimals as strings)."""
    ct = order.copy_trading
    dec = canonical_decimal  # inlined None checks: this runs once per published order
    price, qty, filled, remaining = (
        order.price,
        order.quantity,
        order.filled_quantity,
        order.remaining_quantity,
    )
    avg, stop, fee, lev, margin = (
        order.average_fill_price,
        order.stop_price,
        order.fee,
        order.leverage,
        order.margin,
    )
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "request_id": query.request_id,
        "exchange": order.exchange,
        "account": query.account,
        "account_id": order.account_id,
        "product_type": order.product_type,
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "unified_symbol": order.unified_symbol,
        "side": _enum(order.side),
        "position_side": _enum(order.position_side),
        "order_type": _enum(order.order_type),
        "status": order.status.value,
        "price": None if price is None else dec(price),
        "quantity": None if qty is None else dec(qty),
        "filled_quantity": None if filled is None else dec(filled),
        "remaining_quantity": None if remaining is None else dec(remaining),
        "average_fill_price": None if avg is None else dec(avg),
        "stop_price": None if stop is None else dec(stop),
        "fee": None if fee is None else dec(fee),
        "fee_asset": order.fee_asset,
        "leverage": None if lev is None else dec(lev),
        "margin": None if margin is None else dec(margin),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "observed_at": observed_at,
        "copy_trading": None
        if ct is None
        else {
            "trader_id": ct.trader_id,
            "trader_name": ct.trader_name,
            "open_order_id": ct.open_order_id,
            "close_order_id": ct.close_order_id,
            "open_average_price": _dec(ct.open_average_price),
            "close_average_price": _dec(ct.close_average_price),
            "open_size": _dec(ct.open_size),
            "close_size": _dec(ct.close_size),
            "open_time": ct.open_time,
            "close_time": ct.close_time,
        },
        "snapshot_seq": seq,
        "snapshot_size": size,
        "raw": order.raw,
        "reduce_only": order.reduce_only,
        "post_only": order.post_only,
        "liquidation": order.liquidation,
        "exec_instructions": list(order.exec_instructions),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(redact(value))
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _strings(value: Any, out: list[str]) -> None:
    for v in value.values() if isinstance(value, dict) else value:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict | list):
            _strings(v, out)


def _strings_of(rec: OutputRecord) -> Any:
    """What holds every string of ``rec``, for :func:`_json_clean`."""
    return (rec.key, [*rec.headers.values()], [*rec.value.values()])


def _json_clean(payload: Any) -> bool | None:
    """Whether the strings in ``payload`` are all encodable and hold no secret, told from its
    JSON in one scan (see :func:`_is_clean`); None when the JSON cannot tell."""
    if not secrets_survive_json():
        return None
    try:
        data = _json_encode(payload)
    except (UnicodeEncodeError, TypeError, msgspec.EncodeError):
        return None
    return not contains_secret_utf8(data)


def _is_clean(rec: OutputRecord) -> bool:
    """True when sanitizing ``rec`` would change nothing: every string is encodable and holds
    no secret. Checked on all its strings at once (a false alarm from a secret spanning two
    strings only costs the full pass), which is several times cheaper than rebuilding it.

    The strings are gathered by msgspec's JSON encoder (C) when the secrets allow it
    (:func:`~connector.secrets.secrets_survive_json`): a string holding a secret holds it
    verbatim in its JSON form, and text UTF-8 cannot encode makes the encoder raise. Otherwise,
    or if the encoder refuses a value, by walking the record."""
    clean = _json_clean(_strings_of(rec))
    if clean is not None:
        return clean
    strings = [rec.key or "", *rec.headers.values()]
    _strings(rec.value, strings)
    text = "\x00".join(strings)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return not contains_secret(text)


def sanitize_record(rec: OutputRecord) -> OutputRecord:
    """Secrets redacted and text made encodable in the key, headers and every value string."""
    if _is_clean(rec):
        return rec  # the common case; records are not mutated after this point
    return OutputRecord(
        rec.role,
        None if rec.key is None else _clean(rec.key),
        rec.schema,
        _clean(rec.value),
        {k: _clean(v) for k, v in rec.headers.items()},
    )


def _all_clean(records: list[OutputRecord]) -> bool:
    """True when every record is clean (:func:`_is_clean`), checked on all of them at once: one
    JSON encoding and one scan for a whole snapshot instead of one each per order. False also
    when that cannot tell (then each record is checked on its own)."""
    return bool(records) and _json_clean([_strings_of(r) for r in records]) is True


def sanitize(outcome: Outcome) -> Outcome:
    out = Outcome(
        _clean(outcome.request_id), _clean(outcome.exchange), _clean(outcome.account), outcome.ok
    )
    clean = _all_clean(outcome.orders)
    out.orders = list(outcome.orders) if clean else [sanitize_record(r) for r in outcome.orders]
    out.error = None if outcome.error is None else sanitize_record(outcome.error)
    out.result = None if outcome.result is None else sanitize_record(outcome.result)
    out.query, out.started_at = outcome.query, outcome.started_at
    return out


def _dec(d: Any) -> str | None:
    return None if d is None else canonical_decimal(d)


def _enum(e: Any) -> str | None:
    return None if e is None else str(e.value)


def _headers(request_id: str, exchange: str, account: str) -> dict[str, str]:
    return {"request_id": request_id, "exchange": exchange, "account": account}


def _log_ctx(raw: RawCommand, query: OrderQuery | None) -> dict[str, Any]:
    if query is not None:
        return {
            "request_id": query.request_id,
            "exchange": query.exchange,
            "account": query.account,
        }
    return {"request_id": raw.request_id, "exchange": raw.exchange, "account": raw.account}
