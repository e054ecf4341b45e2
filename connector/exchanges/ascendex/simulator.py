"""AscendEX simulator: the REST and WebSocket endpoints the connector uses, spoken like the real
exchange, so that production differs only in its URLs.

Served (shapes follow the AscendEX futures v2 documentation):

* ``GET /api/pro/v1/info`` — signed account info (``x-auth-*`` headers, prehash ``<ts>+info``);
  a wrong signature gets AscendEX's ``{"code":200001,"reason":"AUTHENTICATION_FAILED",...}``.
* ``GET /api/pro/v2/futures/contract`` — public contract list.
* ``/{accountGroup}/api/pro/v2/stream`` — WebSocket: ``connected`` greeting, ``op: auth``,
  server pings (a session missing two consecutive pings is disconnected), client pings,
  ``futures-open-orders`` requests.

The control API under ``/__sandbox/`` lets tests inject faults and read counters. State lives in
``app["state"]`` so several simulators can run in one process without sharing anything.

The demo credentials below are sandbox-only fixtures; they open nothing on the real exchange.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import hmac
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from aiohttp import WSMsgType, web
from aiohttp.web_exceptions import NotAppKeyWarning

log = logging.getLogger(__name__)

EXCHANGE = "ascendex"
TIMESTAMP_WINDOW_MS = 30_000  # AscendEX rejects signed requests more than 30 s off server time
DEFAULT_PING_INTERVAL_S = 15.0
MISSED_PINGS_LIMIT = 2

# Decimal fields travel as strings on AscendEX; YAML order files may hold bare numbers.
_INTEGER_FIELDS = frozenset({"time", "lastExecTime", "seqNum"})


@dataclass
class SimAccount:
    """One simulated API key. ``accepted_secret`` is what the exchange holds for the key."""

    alias: str
    api_key: str
    accepted_secret: str
    account_group: int
    futures_account_id: str
    user_uid: str
    # What the live exchange is believed to verify WebSocket auth with (see ascendex/auth.py).
    ws_sign_key: str = "base64"
    orders: list[dict[str, Any]] = field(default_factory=list)
    # What demo_accounts() hands to the connector; differs from accepted_secret for "badkey".
    client_secret: str | None = None


def _order(account_id: str, **fields_: Any) -> dict[str, Any]:
    """An open-order row in the reference's key order, with the reference's placeholders."""
    row: dict[str, Any] = {
        "ac": "FUTURES",
        "accountId": account_id,
        "time": 1615696544843,
        "orderId": "",
        "seqNum": 13,
        "orderType": "Limit",
        "execInst": "NULL_VAL",
        "side": "Sell",
        "symbol": "BTC-PERP",
        "price": "0",
        "orderQty": "0",
        "stopPrice": "0",
        "stopBy": "market",
        "status": "New",
        "lastExecTime": 1615696544851,
        "lastQty": "0",
        "lastPx": "0",
        "avgFilledPx": "0",
        "cumFilledQty": "0",
        "fee": "0",
        "cumFee": "0",
        "feeAsset": "USDT",
        "errorCode": "",
        "posStopLossPrice": "0",
        "posStopLossTrigger": "None",
        "posTakeProfitPrice": "0",
        "posTakeProfitTrigger": "None",
    }
    row.update(fields_)
    return row


DEMO_FUTURES_ACCOUNT = "futQ7dmRb2kqZ0sLxW4nVe8yTcP1aHj3"


def _demo_orders() -> list[dict[str, Any]]:
    acct = DEMO_FUTURES_ACCOUNT
    # AscendEX sometimes names the limit price "orderPrice"; it sits where "price" would be.
    base = _order(
        acct,
        orderId="r1782f1a90c1U3792951278sethpAckQ",
        time=1615696601000,
        lastExecTime=1615696601000,
        seqNum=17,
        symbol="ETH-PERP",
        side="Sell",
        price="3900.25",
        orderQty="1.5",
        status="Ack",
    )
    order_price_row = {("orderPrice" if k == "price" else k): v for k, v in base.items()}
    return [
        _order(
            acct,
            orderId="r1782f04c58aU3792951278sbtcp7EbA",
            price="66000",
            orderQty="0.0001",
        ),
        _order(
            acct,
            orderId="r1782f0a1b7cU3792951278sbtcpPf2Q",
            time=1615696550120,
            lastExecTime=1615696571002,
            seqNum=15,
            side="Buy",
            price="60000.5",
            orderQty="0.5",
            status="PartiallyFilled",
            lastQty="0.2",
            lastPx="60000.5",
            avgFilledPx="60000.5",
            cumFilledQty="0.2",
            fee="0.0072006",
            cumFee="0.0072006",
        ),
        _order(
            acct,
            orderId="r1782f11d2e4U3792951278sethpSl9K",
            time=1615696580500,
            lastExecTime=1615696580500,
            seqNum=16,
            orderType="StopLimit",
            execInst="StopOnMark",
            side="Buy",
            symbol="ETH-PERP",
            price="3500",
            orderQty="2",
            stopPrice="3450",
            stopBy="mark",
            status="PendingNew",
        ),
        order_price_row,
        _order(
            acct,
            orderId="r1782f1c3d55U3792951278sethpSm4Z",
            time=1615696622000,
            lastExecTime=1615696622000,
            seqNum=18,
            orderType="StopMarket",
            execInst="StopOnMarket",
            side="Sell",
            symbol="ETH-PERP",
            orderQty="0.75",
            stopPrice="3000",
            status="New",
        ),
    ]


def _default_accounts() -> dict[str, SimAccount]:
    accounts = [
        SimAccount(
            alias="ascendex-demo",
            api_key="qMucfl1hSiabPZFJKPG6kCma2rj1zluS",
            accepted_secret="3gQAYZ01tSUMnU0dsKA0iivhmDOuGAz3AlzS3oujro1q3JJHogFn9JqRe7Pe5MWf",  # noqa: S106 - sandbox-only fixture
            account_group=7,
            futures_account_id=DEMO_FUTURES_ACCOUNT,
            user_uid="U3792951278",
            orders=_demo_orders(),
        ),
        SimAccount(
            alias="ascendex-empty",
            api_key="EcwmMUe99nELEJUIBlmmUNkepi0rbe0B",
            accepted_secret="vmFfczRmQWuBIoysqFZYvDWD5KSZAWN2msl1C2dhte9fMQr2jeAQiaXNQD8nkSUf",  # noqa: S106 - sandbox-only fixture
            account_group=3,
            futures_account_id="futE0mptyAcc0unt000000000000000A",
            user_uid="U1100220033",
        ),
        SimAccount(
            alias="ascendex-badkey",
            api_key="k6FpUgOTpfxaI3k05dkWqnUTjtSRH2sO",
            accepted_secret="gVfjjMszQkgIRWUletk5Am2G4natY2fEFDa22nf9YJWjOKr91mDonGuM38yoaLg6",  # noqa: S106 - sandbox-only fixture
            account_group=7,
            futures_account_id="futBadKeyAcc0unt00000000000000B",
            user_uid="U4400550066",
            # The connector is given a different secret, so every signature it makes is wrong.
            client_secret="cZxYG8GaJb98mVwBAZgjtAZyTv9bwnoUdHwmLdyqOga51SM7dx52gEXTxhDq9N7T",  # noqa: S106 - sandbox-only fixture
        ),
    ]
    return {a.alias: a for a in accounts}


def demo_accounts() -> dict[str, dict[str, Any]]:
    """The accounts-file entries matching the simulator's demo keys."""
    result: dict[str, dict[str, Any]] = {}
    for account in _default_accounts().values():
        result[account.alias] = {
            "exchange": EXCHANGE,
            "api_key": account.api_key,
            "api_secret": account.client_secret or account.accepted_secret,
            # Written only when it differs from the connector's default, so the demo exercises
            # the default path.
            **(
                {"options": {"ws_sign_key": account.ws_sign_key}}
                if account.ws_sign_key != "base64"
                else {}
            ),
        }
    return result


def _contract(symbol: str, base: str, tick: str, lot: str, start: int) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "status": "Normal",
        "displayName": f"{base}USDT",
        "settlementAsset": "USDT",
        "underlying": f"{base}/USDT",
        "tradingStartTime": start,
        "priceFilter": {"minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
        "lotSizeFilter": {"minQty": lot, "maxQty": "1000000000", "lotSize": lot},
        "marginRequirements": [
            {
                "positionNotionalLowerbound": "0",
                "positionNotionalUpperbound": "50000",
                "initialMarginRate": "0.01",
                "maintenanceMarginRate": "0.006",
            },
            {
                "positionNotionalLowerbound": "50000",
                "positionNotionalUpperbound": "200000",
                "initialMarginRate": "0.02",
                "maintenanceMarginRate": "0.012",
            },
        ],
    }


CONTRACTS: list[dict[str, Any]] = [
    _contract("BTC-PERP", "BTC", "0.25", "0.0001", 1579701600000),
    _contract("ETH-PERP", "ETH", "0.01", "0.01", 1579701600000),
    _contract("SOL-PERP", "SOL", "0.001", "0.1", 1612137600000),
]


# --- state --------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected misbehaviour, set through ``POST /__sandbox/faults``."""

    drop_next_requests: int = 0  # close the socket on the next N requests, unanswered
    delay_ms: int = 0  # delay every futures-open-orders reply
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    ignore_pongs: bool = False  # treat client pongs as missing (server kicks after 2 pings)
    rest_errors_next: int = 0  # next N REST calls answer HTTP 503 SERVER_ERROR
    rate_limit_next: int = 0  # next N REST calls answer HTTP 429


@dataclass(eq=False)
class _Session:
    ws: web.WebSocketResponse
    account_group: int
    account: SimAccount | None = None
    missed_pings: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, payload: Mapping[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload, separators=(",", ":")))


STAT_NAMES = (
    "connections",
    "disconnects",
    "auth_ok",
    "auth_failed",
    "ws_auth_failed",
    "rest_auth_failed",
    "requests",
    "dropped",
    "pings_sent",
    "pongs_received",
    "client_pings",
    "disconnects_for_missed_pings",
    "rest_info_calls",
    "rest_contract_calls",
    "rest_errors_injected",
    "max_in_flight_requests",
)


class SimState:
    """Accounts, faults and counters of one simulator app."""

    def __init__(self, accounts: Mapping[str, SimAccount]) -> None:
        self.accounts = dict(accounts)
        self.faults = Faults()
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.sessions: set[_Session] = set()
        self.in_flight = 0
        self._waiters: list[tuple[Callable[[SimState], bool], asyncio.Future[None]]] = []

    def by_key(self, api_key: str) -> SimAccount | None:
        for account in self.accounts.values():
            if hmac.compare_digest(account.api_key, api_key):
                return account
        return None

    def bump(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n
        self._notify()

    def snapshot(self) -> dict[str, int]:
        return {**self.stats, "open_connections": len(self.sessions)}

    def _notify(self) -> None:
        still: list[tuple[Callable[[SimState], bool], asyncio.Future[None]]] = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate(self):
                future.set_result(None)
            else:
                still.append((predicate, future))
        self._waiters = still

    async def wait_for(self, predicate: Callable[[SimState], bool], timeout_s: float) -> None:
        """Wait until ``predicate(state)`` holds (checked on every counter change)."""
        if predicate(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"sandbox condition not met in {timeout_s}s: {self.snapshot()}"
            ) from None

    def reset(self) -> None:
        self.faults = Faults()
        for name in self.stats:
            self.stats[name] = 0
        self._wake_sessions()

    def _wake_sessions(self) -> None:
        for session in self.sessions:
            session.wake.set()


STATE_KEY = "state"  # app["state"], as the brief for every simulator asks


def get_state(app: web.Application) -> SimState:
    """The simulator state of ``app`` (typed access to ``app["state"]``)."""
    state = app[STATE_KEY]
    assert isinstance(state, SimState)
    return state


# --- signatures ---------------------------------------------------------------------------


def _expected_signature(secret: str, timestamp: str, path: str, mode: str) -> str | None:
    if mode == "base64":
        try:
            key = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        key = secret.encode()
    digest = hmac.new(key, f"{timestamp}+{path}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _signature_ok(secret: str, timestamp: str, path: str, mode: str, signature: str) -> bool:
    expected = _expected_signature(secret, timestamp, path, mode)
    return expected is not None and hmac.compare_digest(expected, signature)


def _timestamp_ok(value: object) -> bool:
    try:
        ts = int(str(value))
    except ValueError:
        return False
    return abs(time.time() * 1000 - ts) <= TIMESTAMP_WINDOW_MS


# --- REST ---------------------------------------------------------------------------------


def _rest_error(code: int, reason: str, message: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "message": message, "reason": reason}, status=status)


def _injected_rest_fault(state: SimState) -> web.Response | None:
    if state.faults.rate_limit_next > 0:
        state.faults.rate_limit_next -= 1
        state.bump("rest_errors_injected")
        return web.Response(status=429, text="Too Many Requests")
    if state.faults.rest_errors_next > 0:
        state.faults.rest_errors_next -= 1
        state.bump("rest_errors_injected")
        return _rest_error(510001, "SERVER_ERROR", "Something wrong with server.", status=503)
    return None


async def account_info(request: web.Request) -> web.Response:
    state = get_state(request.app)
    state.bump("rest_info_calls")
    fault = _injected_rest_fault(state)
    if fault is not None:
        return fault
    key = request.headers.get("x-auth-key")
    ts = request.headers.get("x-auth-timestamp")
    sig = request.headers.get("x-auth-signature")
    if not key or not ts or not sig:
        state.bump("auth_failed")
        state.bump("rest_auth_failed")
        return _rest_error(
            100009, "AUTHORIZATION_NEEDED", "Authorization is required for the API access"
        )
    if not _timestamp_ok(ts):
        state.bump("auth_failed")
        state.bump("rest_auth_failed")
        return _rest_error(100011, "INVALID_TIMESTAMP", "Not a valid timestamp")
    account = state.by_key(key)
    # REST signs with the raw secret (the documentation's worked example only matches that).
    if account is None or not _signature_ok(account.accepted_secret, ts, "info", "raw", sig):
        state.bump("auth_failed")
        state.bump("rest_auth_failed")
        return _rest_error(200001, "AUTHENTICATION_FAILED", "API signature mismatch")
    return web.json_response(
        {
            "code": 0,
            "data": {
                "accountGroup": account.account_group,
                "email": f"{account.alias}@sandbox.invalid",
                "expireTime": -1,
                "allowedIps": [],
                "cashAccount": [f"csh{account.futures_account_id[3:]}"],
                "marginAccount": [f"mar{account.futures_account_id[3:]}"],
                "futuresAccount": [account.futures_account_id],
                "userUID": account.user_uid,
                "tradePermission": False,
                "transferPermission": False,
                "viewPermission": True,
                "limitQuota": 1000,
            },
        }
    )


async def futures_contracts(request: web.Request) -> web.Response:
    state = get_state(request.app)
    state.bump("rest_contract_calls")
    fault = _injected_rest_fault(state)
    if fault is not None:
        return fault
    return web.json_response({"code": 0, "data": CONTRACTS})


# --- WebSocket ----------------------------------------------------------------------------


def _ws_error(request_id: object, code: int, reason: str, info: str) -> dict[str, Any]:
    message: dict[str, Any] = {"m": "error"}
    if request_id is not None:
        message["id"] = request_id
    message.update(code=code, reason=reason, info=info)
    return message


async def stream(request: web.Request) -> web.StreamResponse:
    state = get_state(request.app)
    try:
        group = int(request.match_info["group"])
    except ValueError:
        raise web.HTTPNotFound() from None
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
    await ws.prepare(request)
    session = _Session(ws=ws, account_group=group)
    state.sessions.add(session)
    state.bump("connections")
    pinger = asyncio.create_task(_server_pinger(state, session))
    try:
        await session.send({"m": "connected", "type": "unauth"})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            await _on_message(state, session, msg.data)
    finally:
        pinger.cancel()
        for task in list(session.tasks):
            task.cancel()
        state.sessions.discard(session)
        state.bump("disconnects")
    return ws


async def _on_message(state: SimState, session: _Session, text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        await session.send(
            _ws_error(None, 150001, "INVALID_JSON_FORMAT", "Require a valid json object")
        )
        return
    if not isinstance(message, dict):
        await session.send(
            _ws_error(None, 150001, "INVALID_JSON_FORMAT", "Require a valid json object")
        )
        return
    op = message.get("op")
    request_id = message.get("id")
    if op == "ping":
        session.missed_pings = 0
        state.bump("client_pings")
        await session.send({"m": "pong", "code": 0, "ts": int(time.time() * 1000), "hp": 3})
    elif op == "pong":
        if not state.faults.ignore_pongs:
            session.missed_pings = 0
            state.bump("pongs_received")
    elif op == "auth":
        await _on_auth(state, session, message)
    elif op == "req":
        task = asyncio.create_task(_on_request(state, session, message))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
    else:
        await session.send(
            _ws_error(request_id, 100005, "INVALID_WS_REQUEST_DATA", f"Invalid op: {op}")
        )


async def _on_auth(state: SimState, session: _Session, message: Mapping[str, Any]) -> None:
    request_id = message.get("id")

    async def fail(code: int, err: str) -> None:
        state.bump("auth_failed")
        state.bump("ws_auth_failed")
        reply: dict[str, Any] = {"m": "auth"}
        if request_id is not None:
            reply["id"] = request_id
        reply.update(code=code, err=err)
        await session.send(reply)

    key, ts, sig = message.get("key"), message.get("t"), message.get("sig")
    if not isinstance(key, str) or ts is None or not isinstance(sig, str):
        await fail(100005, "Missing required parameter: t, key or sig")
        return
    if not _timestamp_ok(ts):
        await fail(100011, "Invalid timestamp")
        return
    account = state.by_key(key)
    if account is None or account.account_group != session.account_group:
        await fail(200006, "Unable to find User Account Data")
        return
    if not _signature_ok(account.accepted_secret, str(ts), "v2/stream", account.ws_sign_key, sig):
        await fail(200001, "Authorization Failure: signature mismatch")
        return
    session.account = account
    state.bump("auth_ok")
    reply = {"m": "auth", "code": 0}
    if request_id is not None:
        reply = {"m": "auth", "id": request_id, "code": 0}
    await session.send(reply)


async def _on_request(state: SimState, session: _Session, message: Mapping[str, Any]) -> None:
    request_id = message.get("id")
    action = message.get("action")
    state.bump("requests")
    if session.account is None:
        await session.send(
            _ws_error(
                request_id,
                100009,
                "AUTHORIZATION_NEEDED",
                "Authorization is required for the API access or request",
            )
        )
        return
    if action != "futures-open-orders":
        await session.send(
            _ws_error(request_id, 100005, "INVALID_WS_REQUEST_DATA", f"Invalid action: {action}")
        )
        return
    if state.faults.drop_next_requests > 0:
        state.faults.drop_next_requests -= 1
        state.bump("dropped")
        await session.ws.close()
        return
    args = message.get("args")
    if not isinstance(args, dict):
        await session.send(
            _ws_error(
                request_id, 100005, "INVALID_WS_REQUEST_DATA", "Missing required parameter: args"
            )
        )
        return
    state.in_flight += 1
    if state.in_flight > state.stats["max_in_flight_requests"]:
        state.stats["max_in_flight_requests"] = state.in_flight
    try:
        if state.faults.delay_ms > 0:
            await asyncio.sleep(state.faults.delay_ms / 1000)
    finally:
        state.in_flight -= 1
    symbol = args.get("symbol")
    orders = session.account.orders
    if symbol is not None:
        if not isinstance(symbol, str) or symbol not in {c["symbol"] for c in CONTRACTS}:
            await session.send(
                _ws_error(request_id, 100008, "SYMBOL_ERROR", f"Invalid symbol: {symbol}")
            )
            return
        orders = [o for o in orders if o.get("symbol") == symbol]
    await session.send(
        {
            "m": "futures-open-orders",
            "code": 0,
            "id": request_id,
            "ac": "FUTURES",
            "data": copy.deepcopy(orders),
        }
    )


async def _server_pinger(state: SimState, session: _Session) -> None:
    """Ping every ``ping_interval_s``; after two unanswered pings, say why and disconnect."""
    loop = asyncio.get_running_loop()
    last_ping = loop.time()
    while not session.ws.closed:
        due = last_ping + state.faults.ping_interval_s
        session.wake.clear()
        with contextlib.suppress(TimeoutError):
            # Woken early when faults change, so a new interval applies to live sessions.
            await asyncio.wait_for(session.wake.wait(), max(0.0, due - loop.time()))
            continue
        if session.missed_pings >= MISSED_PINGS_LIMIT:
            await session.send(
                {
                    "m": "disconnected",
                    "code": 100005,
                    "reason": "INVALID_WS_REQUEST_DATA",
                    "info": "Session is disconnected due to missing pong message from the client",
                }
            )
            state.bump("disconnects_for_missed_pings")
            await session.ws.close()
            return
        session.missed_pings += 1
        last_ping = loop.time()
        await session.send(
            {"m": "ping", "hp": max(0, MISSED_PINGS_LIMIT + 1 - session.missed_pings)}
        )
        state.bump("pings_sent")


# --- control API --------------------------------------------------------------------------

_FAULT_TYPES = {f.name: f.type for f in fields(Faults)}


async def set_faults(request: web.Request) -> web.Response:
    state = get_state(request.app)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    disconnect_all = bool(body.pop("disconnect_all", False))
    unknown = sorted(set(body) - set(_FAULT_TYPES))
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown fault(s): {', '.join(unknown)}")
    for name, value in body.items():
        current = getattr(state.faults, name)
        try:
            if isinstance(current, bool):
                new: Any = bool(value)
            elif isinstance(current, int):
                new = int(value)
            else:
                new = float(value)
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text=f"bad value for {name}") from None
        if name == "ping_interval_s" and new <= 0:
            raise web.HTTPBadRequest(text="ping_interval_s must be > 0")
        setattr(state.faults, name, new)
    state._wake_sessions()
    if disconnect_all:
        for session in list(state.sessions):
            await session.ws.close()
    return web.json_response({"faults": state.faults.__dict__})


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(get_state(request.app).snapshot())


async def reset(request: web.Request) -> web.Response:
    get_state(request.app).reset()
    return web.json_response({"ok": True})


# --- app ----------------------------------------------------------------------------------


def _normalize_order(row: Mapping[str, Any]) -> dict[str, Any]:
    """Render YAML numbers the way AscendEX does: decimals as strings, timestamps as ints."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _INTEGER_FIELDS or isinstance(value, bool) or not isinstance(value, int | float):
            out[str(key)] = value
        else:
            out[str(key)] = repr(value) if isinstance(value, float) else str(value)
    return out


def load_orders_file(path: str | Path, accounts: Mapping[str, SimAccount]) -> None:
    """Replace the orders of the aliases the file names.

    The same file feeds every simulator, so aliases of other exchanges are skipped; an
    ``ascendex:`` section, when present, is used instead of the top level.
    """
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map account aliases to lists of orders")
    nested = data.get(EXCHANGE)
    section: dict[Any, Any] = nested if isinstance(nested, dict) else data
    for alias, rows in section.items():
        account = accounts.get(str(alias))
        if account is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: {alias} must be a list of order objects")
        account.orders = [_normalize_order(r) for r in rows]


def create_app(
    orders_file: str | None = None, *, accounts: Mapping[str, SimAccount] | None = None
) -> web.Application:
    sim_accounts = dict(accounts) if accounts is not None else _default_accounts()
    if orders_file:
        load_orders_file(orders_file, sim_accounts)
    app = web.Application()
    with warnings.catch_warnings():
        # A plain string key keeps app["state"] reachable from tests and the sandbox runner.
        warnings.simplefilter("ignore", NotAppKeyWarning)
        app[STATE_KEY] = SimState(sim_accounts)
    app.router.add_get("/api/pro/v1/info", account_info)
    app.router.add_get("/api/pro/v2/futures/contract", futures_contracts)
    app.router.add_get("/{group}/api/pro/v2/stream", stream)
    app.router.add_post("/__sandbox/faults", set_faults)
    app.router.add_get("/__sandbox/stats", get_stats)
    app.router.add_post("/__sandbox/reset", reset)
    app.on_shutdown.append(_close_sessions)
    return app


async def _close_sessions(app: web.Application) -> None:
    for session in list(get_state(app).sessions):
        await session.ws.close()
