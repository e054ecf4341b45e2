"""Freshness as data: how fresh the connector's view of an account is, as a record. Pure, no Kafka.

The open-orders table (connector/state.py) says which orders are open, but a row can only be
trusted as far as the account's snapshots are recent: an account whose fetches fail keeps its
last rows, which look exactly like fresh ones. So each account gets an ``AccountStatus`` record
(``avro/AccountStatus.avsc``, compacted topic ``account-status``, key ``<exchange>:<account>``)
that a risk engine joins with open-orders: an order row of a ``FRESH`` account is open as of
``as_of``; a row of a ``STALE`` account is unknown, not open.

This module is the state machine; the worker feeds it and publishes what it returns.

Inputs
------
* an **attempt** (:class:`Ok` or :class:`Failed`), built from a command's QueryResult and
  ErrorEvent by :func:`attempt_of`. Attempts are ordered by when their fetch started
  (``started_at``, as snapshot versions are in connector/state.py), because commands of one
  account finish in any order.
* **time**: :func:`refresh` turns ``FRESH``/``FAILING`` into ``STALE`` once ``as_of +
  stale_after_ms`` has passed with no newer snapshot (:func:`stale_at` says when);
* whether the account's venue is **disabled** by configuration (the worker knows it).

What an attempt says about the account
--------------------------------------
* ``OK`` of a snapshot that covers the account (no ``symbol`` or ``trader_id`` filter, which
  select part of its orders; venue options such as a product type are how an unfiltered command
  is answered, so they count as covering): ``as_of`` becomes its ``started_at`` if that is newer
  (the rows are true as of then at least), with its request id and order count. A narrower
  snapshot proves the venue answers but not that the account's other rows are current: it
  resets the failures and leaves ``as_of`` alone.
* ``FAILED`` for a reason about the venue or the account (``AUTH_FAILED``, ``RATE_LIMITED``,
  ``TIMEOUT``, ``EXCHANGE_*``, ``VENUE_UNAVAILABLE``, ``MALFORMED_RESPONSE``,
  ``SNAPSHOT_TOO_LARGE``, ``INTERNAL``): one more consecutive failure, with its code and its
  (one-line, cut) message. A failure whose fetch started before ``as_of`` is ignored: a newer
  snapshot already succeeded.
* The command's own mistakes (``INVALID_COMMAND``, ``UNKNOWN_ACCOUNT``, ``UNSUPPORTED``,
  ``EXPIRED``) and ``VENUE_DISABLED`` say nothing about the account's data: no change.

Status, in order of precedence
------------------------------
``DISABLED`` (venue switched off), then ``UNKNOWN`` (no snapshot yet and no failure: configured,
never answered), ``STALE`` (``now > as_of + stale_after_ms``, or no snapshot ever and a failed
attempt), ``FAILING`` (the newest attempts failed but ``as_of`` is still recent), ``FRESH``.
So ``STALE`` comes from time alone, never from one failed attempt; and since the standing
queries publish one command per slot by the clock (connector/schedules.py), never from the
scheduler either.

Every function returns a new record, or None when nothing but ``updated_at`` would change: the
worker publishes only real changes (and the compacted topic keeps the last one per account).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

StatusRecord = dict[str, Any]
"""An ``orderconnector.AccountStatus`` record (field names of ``avro/AccountStatus.avsc``)."""

FRESH, FAILING, STALE, UNKNOWN, DISABLED = "FRESH", "FAILING", "STALE", "UNKNOWN", "DISABLED"

#: Error codes that are about the command, not about the account's data: no status change.
NOT_ABOUT_THE_ACCOUNT = frozenset(
    {"INVALID_COMMAND", "UNKNOWN_ACCOUNT", "UNSUPPORTED", "EXPIRED", "VENUE_DISABLED"}
)
#: Filters that select part of an account's orders: a snapshot with one does not refresh as_of.
NARROWING_FILTERS = frozenset({"symbol", "trader_id"})
MESSAGE_MAX = 500


@dataclass(frozen=True)
class Ok:
    """A complete OK snapshot of the account."""

    request_id: str
    started_at: int  # when its fetch started (QueryResult.started_at)
    open_orders: int
    covers_account: bool = True  # False for a symbol- or trader-filtered snapshot


@dataclass(frozen=True)
class Failed:
    """A failed attempt to fetch the account's open orders."""

    request_id: str
    started_at: int
    code: str
    message: str


Attempt = Ok | Failed


def attempt_of(
    result: Mapping[str, Any],
    error: Mapping[str, Any] | None = None,
    scope: Mapping[str, str] | None = None,
) -> Attempt | None:
    """The attempt a command's QueryResult (and its ErrorEvent, for the message) describes, or
    None when it says nothing about an account's data (unreadable command, its own mistake).
    ``scope``: the snapshot's scope (connector/state.py ``scope_of_query``); default: the
    QueryResult's ``symbol`` alone."""
    if result.get("exchange") is None or result.get("account") is None:
        return None
    request_id, started_at = str(result["request_id"]), _ms(result["started_at"])
    if result["status"] == "OK":
        filters = dict(scope) if scope is not None else {"symbol": result.get("symbol")}
        covers = not any(filters.get(name) is not None for name in NARROWING_FILTERS)
        return Ok(request_id, started_at, int(result["order_count"]), covers)
    code = str(result.get("error_code") or (error or {}).get("code") or "INTERNAL")
    if code in NOT_ABOUT_THE_ACCOUNT:
        return None
    return Failed(request_id, started_at, code, str((error or {}).get("message") or ""))


def initial(
    exchange: str, account: str, *, stale_after_ms: int, now_ms: int, disabled: bool = False
) -> StatusRecord:
    """The record of a configured account nothing is known about yet (``UNKNOWN``)."""
    record: StatusRecord = {
        "exchange": exchange,
        "account": account,
        "status": UNKNOWN,
        "as_of": None,
        "as_of_request_id": None,
        "open_orders": None,
        "last_attempt_at": None,
        "last_error_code": None,
        "last_error_message": None,
        "consecutive_failures": 0,
        "stale_after_ms": stale_after_ms,
        "updated_at": now_ms,
    }
    record["status"] = status_of(record, now_ms=now_ms, disabled=disabled)
    return record


def status_of(record: Mapping[str, Any], *, now_ms: int, disabled: bool = False) -> str:
    """The status a record's facts give at ``now_ms`` (module docstring, "Status")."""
    if disabled:
        return DISABLED
    as_of, failures = record["as_of"], record["consecutive_failures"]
    if as_of is None:
        return UNKNOWN if failures == 0 else STALE
    if now_ms > as_of + record["stale_after_ms"]:
        return STALE
    return FAILING if failures > 0 else FRESH


def stale_at(record: Mapping[str, Any]) -> int | None:
    """When the record turns ``STALE`` if nothing newer arrives (the first millisecond past
    ``as_of + stale_after_ms``); None without a snapshot."""
    as_of = record["as_of"]
    return None if as_of is None else int(as_of) + int(record["stale_after_ms"]) + 1


def apply_attempt(
    previous: Mapping[str, Any] | None,
    exchange: str,
    account: str,
    attempt: Attempt,
    *,
    now_ms: int,
    stale_after_ms: int,
    disabled: bool = False,
) -> StatusRecord | None:
    """The account's record after ``attempt``; None when only ``updated_at`` would change.
    ``previous`` (never modified) is the account's last record, None for none."""
    prev = dict(previous) if previous else initial(
        exchange, account, stale_after_ms=stale_after_ms, now_ms=now_ms, disabled=disabled
    )  # fmt: skip
    new = {**prev, "stale_after_ms": stale_after_ms}
    as_of, last = prev["as_of"], prev["last_attempt_at"]
    newest = last is None or attempt.started_at >= last
    if isinstance(attempt, Ok):
        if attempt.covers_account and (as_of is None or attempt.started_at > as_of):
            new.update(as_of=attempt.started_at, as_of_request_id=attempt.request_id,
                       open_orders=attempt.open_orders)  # fmt: skip
        if newest:
            new.update(consecutive_failures=0, last_error_code=None, last_error_message=None)
    else:
        if as_of is not None and attempt.started_at < as_of:  # a newer snapshot succeeded
            return _if_changed(previous, new, now_ms=now_ms, disabled=disabled)
        new["consecutive_failures"] = prev["consecutive_failures"] + 1
        if newest or prev["last_error_code"] is None:
            new.update(last_error_code=attempt.code, last_error_message=sanitize(attempt.message))
    if newest:
        new["last_attempt_at"] = attempt.started_at
    return _if_changed(previous, new, now_ms=now_ms, disabled=disabled)


def refresh(
    previous: Mapping[str, Any],
    *,
    now_ms: int,
    stale_after_ms: int | None = None,
    disabled: bool = False,
) -> StatusRecord | None:
    """The record at ``now_ms`` with no new attempt (time passing, the venue disabled or enabled,
    the threshold changed); None when only ``updated_at`` would change."""
    new = dict(previous)
    if stale_after_ms is not None:
        new["stale_after_ms"] = stale_after_ms
    return _if_changed(previous, new, now_ms=now_ms, disabled=disabled)


def sanitize(message: str) -> str:
    """One line, at most :data:`MESSAGE_MAX` characters (error messages never hold secrets:
    connector/errors.py; this only keeps the record small and printable)."""
    line = " ".join(message.split())
    return line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 1] + "…"


def _if_changed(
    previous: Mapping[str, Any] | None, new: StatusRecord, *, now_ms: int, disabled: bool
) -> StatusRecord | None:
    new["status"] = status_of(new, now_ms=now_ms, disabled=disabled)
    new["updated_at"] = now_ms
    if previous is not None and all(
        previous.get(k) == v for k, v in new.items() if k != "updated_at"
    ):
        return None
    return new


def _ms(value: Any) -> int:
    """Epoch milliseconds from a record's timestamp (an int, or a decoded datetime)."""
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)
