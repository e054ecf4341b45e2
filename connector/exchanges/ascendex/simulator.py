"""AscendEX simulator: the REST and WebSocket endpoints the connector uses, spoken like the real
exchange, so that production differs only in its URLs.

Served (shapes follow the AscendEX futures v2 documentation):

* ``GET /api/pro/v1/info`` — signed account info (``x-auth-*`` headers, prehash ``<ts>+info``);
  a wrong signature gets AscendEX's ``{"code":200001,"reason":"AUTHENTICATION_FAILED",...}``.
* ``GET /api/pro/v2/futures/contract`` — public contract list.
* ``GET /api/pro/v1/exchange-info?requestTime=`` — server time (``requestReceiveAt``).
* ``GET /api/pro/v2/risk-limit-info`` — session caps, message thresholds and the IP's ban.
* ``/{accountGroup}/api/pro/v2/stream`` — WebSocket: ``connected`` greeting, ``op: auth``,
  server pings (a session missing two consecutive pings is disconnected), client pings,
  ``futures-open-orders`` requests.

Per-IP rules, as documented (docs/ascendex.md), all adjustable through ``/__sandbox/faults`` so
tests can use small numbers: at most 20 sessions per account group and 300 in total (a refused
upgrade, HTTP 429, beyond); 45 connection attempts per 5 minutes, then a ban (violationCode
100014) during which upgrades get 429 (or 403, or a Cloudflare-style 502 page); per-minute
message thresholds (above level 1 the message type is silently ignored, above level 2 the session
is killed and the IP banned); signed timestamps more than 30 s off the server clock are rejected
with 100011, and the server clock itself can be skewed (``clock_offset_ms``).

The control API under ``/__sandbox/`` lets tests inject faults and read counters. State lives in
``app["state"]`` so several simulators can run in one process without sharing anything.

The demo credentials below are sandbox-only fixtures; they open nothing on the real exchange.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.web_exceptions import NotAppKeyWarning

from ...sandbox.orders import read_orders_file

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
    # API key expiry relative to now (ms); None = never (``expireTime: -1``). Negative: expired.
    expires_in_ms: int | None = None
    # Answer with the live payload quirks: envelope ``code: "0"``, string ``time``/``seqNum``.
    live_quirks: bool = False
    # Orders from an orders file: nothing changes them while the simulator runs, so their JSON
    # is serialized once (large seeded books must not make the simulator what is measured).
    seeded: bool = False

    def expire_time(self, now_ms: int) -> int:
        return -1 if self.expires_in_ms is None else now_ms + self.expires_in_ms

    def expired(self, now_ms: int) -> bool:
        return self.expires_in_ms is not None and self.expires_in_ms <= 0


def order_row(account_id: str, **fields_: Any) -> dict[str, Any]:
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
    base = order_row(
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
        order_row(
            acct,
            orderId="r1782f04c58aU3792951278sbtcp7EbA",
            price="66000",
            orderQty="0.0001",
        ),
        order_row(
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
        order_row(
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
        order_row(
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


INTENT_FUTURES_ACCOUNT = "futIntent0rders000000000000000I"


def _intent_orders() -> list[dict[str, Any]]:
    """Orders whose ``execInst`` tells exposure-reducing orders apart, with live quirks
    (string ``time``/``seqNum``, ``seqNum`` -1, ``status: "Ack"``, ``liquidityInd``...)."""
    acct = INTENT_FUTURES_ACCOUNT
    return [
        order_row(acct, orderId="intentReduceOnly0001", execInst="ReduceOnly", side="Buy",
               price="61000", orderQty="0.2", time="1640217303541", seqNum="28793943559",
               lastExecTime="1640217303541", liquidityInd="n"),
        order_row(acct, orderId="intentLiquidation0002", execInst="Liquidation", side="Sell",
               orderType="Market", orderQty="0.5", status="Ack", seqNum=-1, feeAsset=""),
        order_row(acct, orderId="intentPosStopMkt0003", execInst="PosStopMkt", side="Sell",
               orderType="StopMarket", orderQty="0.1", stopPrice="58000", stopBy="ref-px",
               posStopLossTrigger="market", status="PendingNew", seqNum="-1"),
        order_row(acct, orderId="intentPostOnly0004", execInst="Post", side="Buy", price="59000",
               orderQty="0.3"),
        order_row(acct, orderId="intentOpenStop0005", execInst="OpenStopMkt", side="Buy",
               orderType="StopMarket", orderQty="0.4", stopPrice="70000", status="PendingNew"),
        order_row(acct, orderId="intentLowerCase0006", execInst="reduceOnly", side="Sell",
               price="75000", orderQty="0.05"),
    ]  # fmt: skip


#: Sub-accounts sharing one account group, for the per-group session cap.
GROUP_ACCOUNT_GROUP = 11
GROUP_ACCOUNT_COUNT = 30


def group_alias(n: int) -> str:
    return f"ascendex-grp-{n:02d}"


def _group_accounts() -> list[SimAccount]:
    """Deterministic demo keys (sandbox-only) derived from the alias."""
    accounts = []
    for n in range(1, GROUP_ACCOUNT_COUNT + 1):
        alias = group_alias(n)
        seed = hashlib.sha512(f"ascendex-sandbox:{alias}".encode()).digest()
        account_id = f"futGrp{n:02d}" + seed[:12].hex()
        accounts.append(
            SimAccount(
                alias=alias,
                api_key=base64.b32encode(seed[:20]).decode()[:32],
                accepted_secret=base64.b64encode(seed[16:64]).decode(),
                account_group=GROUP_ACCOUNT_GROUP,
                futures_account_id=account_id,
                user_uid=f"U9{n:09d}",
                orders=[
                    order_row(
                        account_id,
                        orderId=f"grp{n:02d}order0001",
                        side="Buy",
                        price="60000",
                        orderQty="0.01",
                    ),
                ],
            )
        )
    return accounts


#: The account group of accounts an orders file creates (see :func:`load_orders_file`).
SEEDED_ACCOUNT_GROUP = 5


def seeded_account(alias: str, orders: list[dict[str, Any]] | None = None) -> SimAccount:
    """The account an orders file creates for an alias that is not a demo account: sandbox-only
    keys and ids derived from the alias (the same every run), in :data:`SEEDED_ACCOUNT_GROUP`.
    Callers writing its rows read ``futures_account_id`` from here."""
    seed = hashlib.sha512(f"ascendex-sandbox:{alias}".encode()).digest()
    return SimAccount(
        alias=alias,
        api_key=base64.b32encode(seed[:20]).decode()[:32],
        accepted_secret=base64.b64encode(seed[16:64]).decode(),
        account_group=SEEDED_ACCOUNT_GROUP,
        futures_account_id="futSeed" + seed[:12].hex(),
        user_uid=f"U8{int.from_bytes(seed[:4], 'big') % 10**9:09d}",
        orders=list(orders or []),
        seeded=True,
    )


def default_accounts() -> dict[str, SimAccount]:
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
        SimAccount(
            alias="ascendex-intent",
            api_key="Ix3nTqL0aV7pRk2sWb9cYd4eHf6gJm1u",
            accepted_secret="Wm9yZXN0LWludGVudC1zYW5kYm94LW9ubHktc2VjcmV0LWtleS0wMDAwMDAwMDE=",  # noqa: S106 - sandbox-only fixture
            account_group=7,
            futures_account_id=INTENT_FUTURES_ACCOUNT,
            user_uid="U7700880099",
            orders=_intent_orders(),
            live_quirks=True,
        ),
        SimAccount(
            alias="ascendex-expiring",
            api_key="Ex9pRnGk4Lw2Qz7Vb1Yc3Td5Hf8Jm0Ns",
            accepted_secret="RXhwaXJpbmcta2V5LXNhbmRib3gtb25seS1zZWNyZXQtMDAwMDAwMDAwMDAwMDAx",  # noqa: S106 - sandbox-only fixture
            account_group=3,
            futures_account_id="futExpiring0000000000000000000E",
            user_uid="U5500660077",
            expires_in_ms=3 * 86_400_000,  # three days left: the connector warns
        ),
        SimAccount(
            alias="ascendex-expired",
            api_key="Xp1rEdK3yQ8wLz5Vb2Yc7Td4Hf6Jm9Na",
            accepted_secret="RXhwaXJlZC1rZXktc2FuZGJveC1vbmx5LXNlY3JldC0wMDAwMDAwMDAwMDAwMDAx",  # noqa: S106 - sandbox-only fixture
            account_group=3,
            futures_account_id="futExpired00000000000000000000X",
            user_uid="U6600770088",
            expires_in_ms=-86_400_000,  # expired yesterday: the WebSocket login is refused
        ),
        *_group_accounts(),
    ]
    return {a.alias: a for a in accounts}


def demo_accounts() -> dict[str, dict[str, Any]]:
    """The accounts-file entries matching the simulator's demo keys."""
    return account_entries(default_accounts().values())


def app_accounts(app: web.Application) -> dict[str, dict[str, Any]]:
    """The accounts-file entries of a running simulator: its demo accounts and those its orders
    file created."""
    return account_entries(get_state(app).accounts.values())


def account_entries(accounts: Iterable[SimAccount]) -> dict[str, dict[str, Any]]:
    """Accounts-file entries for simulated accounts (``badkey``'s secret deliberately wrong)."""
    result: dict[str, dict[str, Any]] = {}
    for account in accounts:
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
    refuse_upgrades_next: int = 0  # next N WebSocket upgrades refused with refuse_status
    refuse_status: int = 403  # 403, 429, or 502/524 (answered with an HTML edge page)
    # Per-IP limits (documented values; tests lower them).
    max_sessions_per_group: int = 20
    max_sessions_total: int = 300
    at_cap_status: int = 429  # what an upgrade beyond the session caps gets (undocumented)
    connect_limit: int = 45  # upgrade requests per IP per connect_window_s, then a ban
    connect_window_s: float = 300.0
    ban_s: float = 900.0  # ban length (documented for message thresholds: 15 minutes)
    ban_status: int = 429  # what a banned IP's upgrade gets: 429, 403 or 502 (HTML)
    threshold_window_s: float = 60.0  # message thresholds count per minute
    req_level1: int = 10000  # futures_open_orders / req group, level 1 and level 2
    req_level2: int = 10000
    admin_level1: int = 800  # auth/ping/pong share a group
    admin_level2: int = 1000
    ignore_s: float = 900.0  # above level 1 a message type is ignored this long
    clock_offset_ms: int = 0  # the server's clock minus the real one
    timestamp_window_ms: int = TIMESTAMP_WINDOW_MS


@dataclass(eq=False)
class _Session:
    ws: web.WebSocketResponse
    account_group: int
    ip: str = "127.0.0.1"
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
    "upgrade_attempts",
    "upgrades_refused",
    "upgrades_refused_at_cap",
    "upgrades_refused_banned",
    "upgrades_refused_injected",
    "bans",
    "max_open_in_group",
    "max_open_total",
    "messages_ignored",
    "sessions_killed",
    "timestamp_rejections",
    "exchange_info_calls",
    "risk_limit_calls",
)


@dataclass
class IpState:
    """What the exchange remembers about one client IP."""

    attempts: deque[float] = field(default_factory=deque)  # upgrade requests (monotonic s)
    banned_until: int = -1  # exchange ms; -1 = not banned
    ban_reason: str = ""
    # (op group) -> message times within the threshold window; and "ignored until"
    messages: dict[str, deque[float]] = field(default_factory=dict)
    ignored_until: dict[str, float] = field(default_factory=dict)

    def banned(self, now_ms: int) -> bool:
        return self.banned_until > now_ms


class SimState:
    """Accounts, faults and counters of one simulator app."""

    def __init__(self, accounts: Mapping[str, SimAccount]) -> None:
        self.accounts = dict(accounts)
        self.faults = Faults()
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.sessions: set[_Session] = set()
        self.in_flight = 0
        self.ips: dict[str, IpState] = {}
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
        by_group: dict[str, int] = {}
        for x in self.sessions:
            name = f"open_in_group_{x.account_group}"
            by_group[name] = by_group.get(name, 0) + 1
        return {**self.stats, "open_connections": len(self.sessions), **by_group}

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
        self.ips.clear()  # bans and counts too: each test starts from a clean IP
        self._wake_sessions()

    def now_ms(self) -> int:
        """The exchange's clock (the real one plus the injected skew)."""
        return int(time.time() * 1000) + self.faults.clock_offset_ms

    def timestamp_ok(self, value: object) -> bool:
        try:
            ts = int(str(value))
        except ValueError:
            return False
        ok = abs(self.now_ms() - ts) <= self.faults.timestamp_window_ms
        if not ok:
            self.bump("timestamp_rejections")
        return ok

    def ip(self, address: str) -> IpState:
        return self.ips.setdefault(address, IpState())

    def ban(self, ip: IpState, reason: str) -> None:
        ip.banned_until = self.now_ms() + int(self.faults.ban_s * 1000)
        ip.ban_reason = reason
        self.bump("bans")
        log.warning("ascendex sandbox: IP banned for %.0fs: %s", self.faults.ban_s, reason)

    def open_in_group(self, address: str, group: int) -> int:
        return sum(1 for x in self.sessions if x.ip == address and x.account_group == group)

    def open_from(self, address: str) -> int:
        return sum(1 for x in self.sessions if x.ip == address)

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
    if not state.timestamp_ok(ts):
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
                "expireTime": account.expire_time(state.now_ms()),
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


async def exchange_info(request: web.Request) -> web.Response:
    """``GET /api/pro/v1/exchange-info?requestTime=<ms>`` (public): the server's receive time."""
    state = get_state(request.app)
    state.bump("exchange_info_calls")
    received = state.now_ms()
    echo_text = request.query.get("requestTime", "")
    echo = int(echo_text) if echo_text.isdigit() else None
    return web.json_response(
        {
            "code": 0,
            "data": {
                "requestTimeEcho": echo,
                "requestReceiveAt": received,
                "latency": received - echo if echo is not None else None,
            },
        }
    )


async def risk_limit_info(request: web.Request) -> web.Response:
    """``GET /api/pro/v2/risk-limit-info`` (public): the IP's ban status, limits, thresholds."""
    state = get_state(request.app)
    state.bump("risk_limit_calls")
    faults = state.faults
    address = request.query.get("ip") or request.remote or "unknown"
    ip = state.ip(address)
    banned = ip.banned(state.now_ms())
    admin1, admin2 = faults.admin_level1, faults.admin_level2
    return web.json_response(
        {
            "code": 0,
            "data": {
                "ip": address,
                "webSocket": {
                    "status": {
                        "isBanned": banned,
                        "bannedUntil": ip.banned_until if banned else -1,
                        "violationCode": 100014 if banned else 0,
                        "reason": ip.ban_reason if banned else "",
                    },
                    "limits": {
                        "maxWebSocketSessionsPerIpAccountGroup": faults.max_sessions_per_group,
                        "maxWebSocketSessionsPerIpTotal": faults.max_sessions_total,
                    },
                    "messageThreshold": {
                        "level1OpThreshold": {
                            "auth": admin1, "ping": admin1, "pong": admin1, "req": faults.req_level1
                        },
                        "level2OpThreshold": {
                            "auth": admin2, "ping": admin2, "pong": admin2, "req": faults.req_level2
                        },
                        "level1ReqThreshold": {"futures_open_orders": faults.req_level1},
                        "level2ReqThreshold": {"futures_open_orders": faults.req_level2},
                    },
                },
            },
        }
    )  # fmt: skip


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


def _refusal(status: int, reason: str) -> web.Response:
    """How the exchange's edge refuses an upgrade: JSON for 403/429, an HTML page for 5xx
    (Cloudflare 502/524, as users report in hummingbot #4959)."""
    if status >= 500:
        html = f"<html><head><title>{status} Bad gateway</title></head><body>{reason}</body></html>"
        return web.Response(status=status, text=html, content_type="text/html")
    return web.json_response(
        {"code": 100014 if "MAX_REQ" in reason else status, "reason": reason}, status=status
    )


def _admit_upgrade(state: SimState, address: str, group: int) -> web.Response | None:
    """The per-IP rules at the upgrade; a response when the upgrade is refused."""
    faults = state.faults
    ip = state.ip(address)
    now = time.monotonic()
    state.bump("upgrade_attempts")
    ip.attempts.append(now)
    while ip.attempts and ip.attempts[0] <= now - faults.connect_window_s:
        ip.attempts.popleft()
    if faults.refuse_upgrades_next > 0:
        faults.refuse_upgrades_next -= 1
        state.bump("upgrades_refused")
        state.bump("upgrades_refused_injected")
        return _refusal(faults.refuse_status, "upgrade refused (injected)")
    if ip.banned(state.now_ms()):
        state.bump("upgrades_refused")
        state.bump("upgrades_refused_banned")
        return _refusal(faults.ban_status, ip.ban_reason)
    if len(ip.attempts) > faults.connect_limit:
        reason = (
            f"exceeds MAX_REQ_COUNT_PER_IP[{faults.connect_limit}], "
            f"{len(ip.attempts)} requests recently"
        )
        state.ban(ip, reason)
        state.bump("upgrades_refused")
        state.bump("upgrades_refused_banned")
        return _refusal(faults.ban_status, reason)
    if (
        state.open_in_group(address, group) >= faults.max_sessions_per_group
        or state.open_from(address) >= faults.max_sessions_total
    ):
        state.bump("upgrades_refused")
        state.bump("upgrades_refused_at_cap")
        return _refusal(faults.at_cap_status, "too many websocket sessions from this ip")
    return None


async def stream(request: web.Request) -> web.StreamResponse:
    state = get_state(request.app)
    try:
        group = int(request.match_info["group"])
    except ValueError:
        raise web.HTTPNotFound() from None
    address = request.remote or "unknown"
    refused = _admit_upgrade(state, address, group)
    if refused is not None:
        return refused
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
    await ws.prepare(request)
    session = _Session(ws=ws, account_group=group, ip=address)
    state.sessions.add(session)
    state.stats["max_open_in_group"] = max(
        state.stats["max_open_in_group"], state.open_in_group(address, group)
    )
    state.stats["max_open_total"] = max(state.stats["max_open_total"], state.open_from(address))
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
    if not await _within_thresholds(state, session, op):
        return
    if op == "ping":
        session.missed_pings = 0
        state.bump("client_pings")
        await session.send({"m": "pong", "code": 0, "ts": state.now_ms(), "hp": 3})
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


async def _within_thresholds(state: SimState, session: _Session, op: object) -> bool:
    """Per-minute message thresholds per IP and op group (docs "Message Threshold"): above
    level 1 the group's messages are ignored (no reply) for ``ignore_s``; above level 2 the
    session is killed and the IP banned. False when the message must not be processed."""
    faults = state.faults
    if op in ("auth", "ping", "pong"):
        group, level1, level2 = "admin", faults.admin_level1, faults.admin_level2
    elif op == "req":
        group, level1, level2 = "req", faults.req_level1, faults.req_level2
    else:
        return True
    ip = state.ip(session.ip)
    now = time.monotonic()
    times = ip.messages.setdefault(group, deque())
    times.append(now)
    while times and times[0] <= now - faults.threshold_window_s:
        times.popleft()
    if len(times) > level2:
        state.ban(ip, f"exceeds level 2 threshold of {group} op: {len(times)} messages")
        state.bump("sessions_killed")
        await session.ws.close()
        return False
    if ip.ignored_until.get(group, 0.0) > now:
        state.bump("messages_ignored")
        return False
    if len(times) > level1:
        ip.ignored_until[group] = now + faults.ignore_s
        state.bump("messages_ignored")
        return False
    return True


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
    if not state.timestamp_ok(ts):
        await fail(100011, "Invalid timestamp")
        return
    account = state.by_key(key)
    if account is None or account.account_group != session.account_group:
        await fail(200006, "Unable to find User Account Data")
        return
    if not _signature_ok(account.accepted_secret, str(ts), "v2/stream", account.ws_sign_key, sig):
        await fail(200001, "Authorization Failure: signature mismatch")
        return
    if account.expired(state.now_ms()):
        # What AscendEX answers for an expired key is undocumented; an auth failure is the
        # conservative guess (docs/ascendex.md, "API keys").
        await fail(200001, "Authorization Failure: API key expired")
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
    # The orders' JSON is serialized once per (account, symbol) and spliced into each reply, so
    # the simulator is not what a benchmark of 1,000-order snapshots measures. Every reply is
    # still fresh JSON text with this request's id.
    code = '"0"' if session.account.live_quirks else "0"  # "0" seen live (ccxt tests)
    data = _data_json(session.account, symbol, orders)
    frame = (
        f'{{"m":"futures-open-orders","code":{code},'
        f'"id":{json.dumps(request_id)},"ac":"FUTURES","data":{data}}}'
    )
    async with session.send_lock:
        if not session.ws.closed:
            await session.ws.send_str(frame)


_DATA_CACHE: dict[tuple[int, str | None], tuple[list[dict[str, Any]], str]] = {}


def _data_json(account: SimAccount, symbol: str | None, orders: list[dict[str, Any]]) -> str:
    """The JSON of ``orders``; cached for seeded accounts (nothing changes their orders while
    the simulator runs), serialized afresh for every other account (tests may change those)."""
    if not account.seeded:
        return json.dumps(orders, separators=(",", ":"))
    key = (id(account), symbol)
    cached = _DATA_CACHE.get(key)
    if cached is None or cached[0] is not account.orders:
        cached = (account.orders, json.dumps(orders, separators=(",", ":")))
        _DATA_CACHE[key] = cached
    return cached[1]


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


def load_orders_file(path: str | Path, accounts: dict[str, SimAccount]) -> None:
    """Replace the orders of the aliases the file names; seed new accounts.

    The same file feeds every simulator: in an ``ascendex:`` section, when present, an alias
    that is not a demo account is created (:func:`seeded_account`: keys derived from its name,
    written to the sandbox's accounts file), so a caller such as the benchmark brings accounts
    of its own. Without the section, aliases of other exchanges are skipped.
    """
    data = read_orders_file(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map account aliases to lists of orders")
    nested = data.get(EXCHANGE)
    section: dict[Any, Any] = nested if isinstance(nested, dict) else data
    for alias, rows in section.items():
        account = accounts.get(str(alias))
        if account is None:
            if section is data:  # top level: another exchange's alias
                continue
            account = accounts[str(alias)] = seeded_account(str(alias))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: {alias} must be a list of order objects")
        account.orders = [_normalize_order(r) for r in rows]
        account.seeded = True


def create_app(
    orders_file: str | None = None, *, accounts: Mapping[str, SimAccount] | None = None
) -> web.Application:
    sim_accounts = dict(accounts) if accounts is not None else default_accounts()
    if orders_file:
        load_orders_file(orders_file, sim_accounts)
    app = web.Application()
    with warnings.catch_warnings():
        # A plain string key keeps app["state"] reachable from tests and the sandbox runner.
        warnings.simplefilter("ignore", NotAppKeyWarning)
        app[STATE_KEY] = SimState(sim_accounts)
    app.router.add_get("/api/pro/v1/info", account_info)
    app.router.add_get("/api/pro/v2/futures/contract", futures_contracts)
    app.router.add_get("/api/pro/v1/exchange-info", exchange_info)
    app.router.add_get("/api/pro/v2/risk-limit-info", risk_limit_info)
    app.router.add_get("/{group}/api/pro/v2/stream", stream)
    app.router.add_post("/__sandbox/faults", set_faults)
    app.router.add_get("/__sandbox/stats", get_stats)
    app.router.add_post("/__sandbox/reset", reset)
    app.on_shutdown.append(_close_sessions)
    return app


async def _close_sessions(app: web.Application) -> None:
    for session in list(get_state(app).sessions):
        await session.ws.close()
