"""A local Bitget simulator that speaks the real REST v2 protocol, for development and tests.

It is strict on purpose: the connector is only as correct as the exchange it was tested against,
so the simulator checks what Bitget checks, the way Bitget documents it.

* Auth: every private request must carry ``ACCESS-KEY``, ``ACCESS-SIGN``, ``ACCESS-TIMESTAMP``,
  ``ACCESS-PASSPHRASE``; the signature is recomputed over the path and the *percent-decoded*
  query string as received (``timestamp + METHOD + requestPath + "?" + queryString + body``), as
  Bitget does (ccxt PR #28890), so a client that signs the encoded text of a non-ASCII symbol
  fails here as it would on Bitget. Failures answer with Bitget's own body and HTTP 400:
  ``40006`` Invalid ACCESS_KEY (malformed key), ``40037`` Apikey does not exist, ``40008``
  Request timestamp expired (> 30 s from server time), ``40012`` apikey/password is incorrect,
  ``40009`` sign signature error.
* Versions of ``query-current-orders`` (docs/bitget.md), chosen per run or per account with
  ``POST /__sandbox/config``:

  - ``reference``: ``pageSize`` (default 20, max 50) / ``pageNo``, ``data`` a list, no time
    filter (the stored reference page has no time parameters);
  - ``current-list`` and ``current-object`` (the default): ``limit`` (default 20, maximum
    ``max_limit``, 100), ``idLessThan``/``idGreaterThan`` (non-numeric -> ``40700``),
    ``startTime``/``endTime`` on copy-trade creation time: three months (90 days) by default,
    ``40705`` over 90 days, ``40707`` start after end, ``40704`` a start older than
    ``history_days`` (400); rows newest first (descending ``trackingNo``); ``data`` a list, or
    ``{"trackingList": [...], "endId": "<last trackingNo>" | ""}`` (``""`` on the last page).

  Every version ignores the parameters it does not know (so the other version's paging), and
  answers a page size over its maximum with 20 rows, no error. ``ignore_params`` makes the
  server ignore more (e.g. ``["limit"]``: default pages; ``["idLessThan", "pageNo"]``: the same
  first page every time).
* Rate limit: ``rate_limit`` (5) requests per rolling second per user ID on the tracking-orders
  endpoint (10 on the older doc); the next gets HTTP 429 ``{"code":"429","msg":"Too Many
  Requests"}`` and is counted as a violation in ``/__sandbox/stats``.
* Fees are negative numbers for fees charged (``"openFee": "-0.06"``), as in Bitget's examples.
* Endpoints: ``GET /api/v2/public/time``, ``GET /api/v2/mix/market/contracts``,
  ``GET /api/v2/copy/mix-follower/query-current-orders`` (``productType`` required, ``symbol``
  and ``traderId`` filters).

Control API on the same server (faults affect the tracking-orders endpoint, except
``delay_ms`` and ``clock_skew_ms`` which affect every endpoint):

* ``POST /__sandbox/faults`` with any of ``{"fail_next": n, "status": 503}``,
  ``{"fail_on_page": p, "times": n, "status": 503}``, ``{"delay_ms": ms}``,
  ``{"malformed_next": n}`` (HTTP 200 with a truncated JSON body), ``{"clock_skew_ms": ms}``
  (the server's clock runs ahead by that much, also in ``/public/time``).
* ``POST /__sandbox/config`` with any of ``{"version", "rate_limit", "max_limit",
  "history_days", "ignore_params", "end_id"}`` (``end_id: "never"``: always ``""``),
  run-wide, or ``{"accounts": {alias: {...}}}`` per account.
* ``GET /__sandbox/stats`` -> ``{"requests", "rate_limit_violations", "by_account"}``; each
  account also reports ``admitted`` and ``span_s`` (first to last admitted orders request).
* ``POST /__sandbox/reset`` clears faults, configuration, counters and rate-limit windows, and
  restores every account's original rows.
* ``GET /__sandbox/orders?account=<alias>`` -> ``{"rows": [...]}``; ``POST /__sandbox/orders``
  with ``{"account": alias, "remove": [trackingNo, ...], "upsert": [row, ...]}`` changes an
  account's open orders at runtime (a row replaces the row with the same ``trackingNo``, or is
  appended), so tests and the demo can show orders added, changed and closed between snapshots;
  ``"hold_next_ms": ms`` holds the account's next orders answer that long *after* its rows were
  read (a snapshot that started first and finishes last).

Demo accounts (see :func:`demo_accounts`): ``bitget-demo`` (3 rows, BTCUSDT + ETHUSDT, one trader,
one row partly closed, one row using the docs' ``openPriceAvg`` spelling), ``bitget-empty``,
``bitget-1``, ``bitget-20``, ``bitget-50``, ``bitget-51``, ``bitget-120``, ``bitget-137``
(that many rows, opened in the last day), ``bitget-250-old`` (250 rows, 30 of them opened 95
to 153 days ago),
``bitget-unicode`` (rows on the non-ASCII symbol ``龙虾USDT``), ``bitget-notfollower`` (``40017``)
and ``bitget-badpass`` (the accounts file gets a wrong passphrase, so Bitget's 40012 comes back).
Row times are relative to the simulator's start, so the three-month window applies to them.

``orders_file`` (YAML) replaces the rows of an account: either a top-level ``bitget:`` mapping of
alias -> rows, or top-level aliases starting with ``bitget`` (the file is shared with the other
simulators). An alias that is not a demo account is created with the credentials
:func:`credentials_for` derives from its name (and listed by :func:`app_accounts`). Quote
numeric values: rows are served as written.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ...sandbox.orders import read_orders_file
from .auth import sign

TIMESTAMP_WINDOW_MS = 30_000
RATE_LIMIT = 5  # current doc; 10 on the reference version's page
RATE_WINDOW_S = 1.0
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 50  # reference version's pageSize
MAX_LIMIT = 100  # current version's limit
DAY_MS = 86_400_000
THREE_MONTHS_MS = 90 * DAY_MS
HISTORY_DAYS = 400
VERSIONS = ("reference", "current-list", "current-object")
_REFERENCE_PARAMS = frozenset({"productType", "symbol", "traderId", "pageSize", "pageNo"})
_CURRENT_PARAMS = frozenset(
    {"productType", "symbol", "traderId", "limit", "startTime", "endTime", "idLessThan",
     "idGreaterThan"}
)  # fmt: skip

PATH_TIME = "/api/v2/public/time"
PATH_CONTRACTS = "/api/v2/mix/market/contracts"
PATH_ORDERS = "/api/v2/copy/mix-follower/query-current-orders"

# --- reference data ----------------------------------------------------------------------------

_CONTRACTS: dict[str, list[tuple[str, str, str, list[str]]]] = {
    # productType -> (symbol, baseCoin, quoteCoin, supportMarginCoins)
    "USDT-FUTURES": [
        ("BTCUSDT", "BTC", "USDT", ["USDT"]),
        ("ETHUSDT", "ETH", "USDT", ["USDT"]),
        ("SOLUSDT", "SOL", "USDT", ["USDT"]),
        ("XRPUSDT", "XRP", "USDT", ["USDT"]),
        ("龙虾USDT", "龙虾", "USDT", ["USDT"]),  # the non-ASCII symbol of ccxt issue #28888
    ],
    "COIN-FUTURES": [
        ("BTCUSD", "BTC", "USD", ["BTC", "ETH", "USDC", "XRP", "EOS", "LTC"]),
        ("ETHUSD", "ETH", "USD", ["BTC", "ETH", "USDC", "XRP", "EOS", "LTC"]),
    ],
    "USDC-FUTURES": [
        ("BTCPERP", "BTC", "USDC", ["USDC"]),
        ("ETHPERP", "ETH", "USDC", ["USDC"]),
    ],
}
_SYMBOL_PRODUCT = {sym: pt for pt, rows in _CONTRACTS.items() for sym, *_ in rows}


def _contract_row(symbol: str, base: str, quote: str, margin: list[str]) -> dict[str, Any]:
    """A contract in the documented shape (values from the docs' example where not obvious)."""
    return {
        "symbol": symbol,
        "baseCoin": base,
        "quoteCoin": quote,
        "buyLimitPriceRatio": "0.9",
        "sellLimitPriceRatio": "0.9",
        "feeRateUpRatio": "0.1",
        "makerFeeRate": "0.0002",
        "takerFeeRate": "0.0006",
        "openCostUpRatio": "0.1",
        "supportMarginCoins": margin,
        "minTradeNum": "0.01",
        "priceEndStep": "1",
        "volumePlace": "2",
        "pricePlace": "1",
        "sizeMultiplier": "0.01",
        "symbolType": "perpetual",
        "minTradeUSDT": "5",
        "maxSymbolOrderNum": "999999",
        "maxProductOrderNum": "999999",
        "maxPositionNum": "150",
        "symbolStatus": "normal",
        "offTime": "-1",
        "limitOpenTime": "-1",
        "deliveryTime": "",
        "deliveryStartTime": "",
        "launchTime": "",
        "fundInterval": "8",
        "minLever": "1",
        "maxLever": "125",
        "posLimit": "0.05",
        "maintainTime": "",
    }


# --- demo accounts -----------------------------------------------------------------------------


def credentials_for(alias: str) -> dict[str, str]:
    """Deterministic sandbox credentials for an alias (shaped like Bitget's: ``bg_`` + hex)."""

    def h(purpose: str) -> str:
        return hashlib.sha256(f"bitget-sandbox:{purpose}:{alias}".encode()).hexdigest()

    return {
        "api_key": "bg_" + h("key")[:32],
        "api_secret": h("secret"),
        "passphrase": "Pass" + h("passphrase")[:12],
        "uid": str(int(h("uid")[:8], 16) % 9_000_000_000 + 1_000_000_000),
    }


# Rows are dated relative to the simulator's start (rounded to the minute): the current version
# of the endpoint filters on creation time, so fixed dates would age out of its window.
_NOW0 = time.time_ns() // 1_000_000 // 60_000 * 60_000
_T0 = _NOW0 - DAY_MS


def _demo_rows() -> list[dict[str, Any]]:
    trader = {"traderId": "4192835710", "traderName": "SandboxTrader"}
    return [
        {
            "trackingNo": "1170000000000000001",
            **trader,
            "openOrderId": "1180000000000000001",
            "closeOrderId": "",
            "symbol": "BTCUSDT",
            "posSide": "long",
            "openLeverage": "20",
            "openAvgPrice": "67250.5",
            "openTime": str(_T0 + 1_000),
            "openFee": "-0.4035030000000000",
            "openSize": "0.0100000000000000",
            "closeAvgPrice": "0",
            "closeSize": "0.0000000000000000",
            "openMarginSz": "33.62525",
            "closeTime": "0",
        },
        {
            "trackingNo": "1170000000000000002",
            **trader,
            "openOrderId": "1180000000000000002",
            "closeOrderId": "",
            "symbol": "ETHUSDT",
            "posSide": "short",
            "openLeverage": "10",
            "openPriceAvg": "3512.40",
            "openTime": str(_T0 + 2_000),
            "openFee": "-0.2107440000000000",
            "openSize": "0.1000000000000000",
            "closeAvgPrice": "0",
            "closeSize": "0.0000000000000000",
            "openMarginSz": "35.124",
            "closeTime": "0",
        },
        {
            "trackingNo": "1170000000000000003",
            **trader,
            "openOrderId": "1180000000000000003",
            "closeOrderId": "1190000000000000003",
            "symbol": "BTCUSDT",
            "posSide": "long",
            "openLeverage": "20",
            "openAvgPrice": "66010.0",
            "openTime": str(_T0 + 3_000),
            "openFee": "-0.7921200000000000",
            "openSize": "0.0200000000000000",
            "closeAvgPrice": "68015.3",
            "closeSize": "0.0050000000000000",
            "openMarginSz": "66.01",
            "closeTime": str(_T0 + 60_000),
        },
    ]


def _generated_rows(
    n: int, *, old: int = 0, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
) -> list[dict[str, Any]]:
    """``n`` rows opened in the last day, ``old`` of them instead opened 95 to 153 days ago
    (beyond the three-month default window); trackingNo grows with openTime."""
    prices = ("67000.5", "3500.25", "150.125")
    traders = (("4192835710", "SandboxTrader"), ("5307719246", "SandboxTraderTwo"))
    rows = []
    for i in range(n):
        trader_id, trader_name = traders[i % 2]
        rows.append(
            {
                "trackingNo": str(1_200_000_000_000_000_000 + i),
                "traderId": trader_id,
                "traderName": trader_name,
                "openOrderId": str(1_300_000_000_000_000_000 + i),
                "closeOrderId": "",
                "symbol": symbols[i % len(symbols)],
                "posSide": "long" if i % 2 == 0 else "short",
                "openLeverage": "10",
                "openAvgPrice": prices[i % 3],
                "openTime": str(_NOW0 - (95 + 2 * i) * DAY_MS if i < old else _T0 + i * 1_000),
                "openFee": "-0.0600000000000000",
                "openSize": f"{(i % 7) + 1}.0000000000000000",
                "closeAvgPrice": "0",
                "closeSize": "0.0000000000000000",
                "openMarginSz": "10",
                "closeTime": "0",
            }
        )
    return rows


DEMO_ROWS: dict[str, list[dict[str, Any]]] = {
    "bitget-demo": _demo_rows(),
    "bitget-empty": [],
    "bitget-1": _generated_rows(1),
    "bitget-50": _generated_rows(50),
    "bitget-51": _generated_rows(51),
    "bitget-120": _generated_rows(120),
    "bitget-20": _generated_rows(20),
    "bitget-137": _generated_rows(137),
    "bitget-250-old": _generated_rows(250, old=30),
    "bitget-unicode": _generated_rows(5, symbols=("龙虾USDT", "BTCUSDT")),
    "bitget-notfollower": [],
    "bitget-badpass": _generated_rows(2),
}
_WRONG_PASSPHRASE = {"bitget-badpass"}
_NOT_FOLLOWER = {"bitget-notfollower"}


def demo_accounts() -> dict[str, dict[str, str]]:
    """Accounts-file entries matching the simulator (``bitget-badpass`` deliberately wrong)."""
    return account_entries(DEMO_ROWS)


def app_accounts(app: web.Application) -> dict[str, dict[str, str]]:
    """Accounts-file entries of a running simulator: the demo accounts and those its orders file
    created."""
    state: SimState = app["state"]
    return account_entries(a.alias for a in state.accounts.values())


def account_entries(aliases: Iterable[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for alias in aliases:
        creds = credentials_for(alias)
        passphrase = creds["passphrase"]
        if alias in _WRONG_PASSPHRASE:
            passphrase = passphrase + "-wrong"
        out[alias] = {
            "exchange": "bitget",
            "api_key": creds["api_key"],
            "api_secret": creds["api_secret"],
            "passphrase": passphrase,
        }
    return out


# --- state -------------------------------------------------------------------------------------


@dataclass
class SimAccount:
    alias: str
    api_key: str
    api_secret: str
    passphrase: str
    uid: str
    rows: list[dict[str, Any]]
    original_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Faults:
    fail_next: int = 0
    fail_status: int = 503
    fail_on_page: int | None = None
    fail_on_page_times: int = 0
    fail_on_page_status: int = 503
    delay_ms: int = 0
    malformed_next: int = 0
    clock_skew_ms: int = 0


@dataclass
class Behaviour:
    """How the tracking-orders endpoint behaves (run-wide, or per account)."""

    version: str = "current-object"
    rate_limit: int = RATE_LIMIT
    max_limit: int = MAX_LIMIT
    history_days: int = HISTORY_DAYS
    ignore_params: frozenset[str] = frozenset()
    # "last-page" (the sibling example: "" on the last page), or "never" (always ""),
    # the hazard of a server that does not fill it in.
    end_id: str = "last-page"

    def update(self, spec: dict[str, Any]) -> Behaviour:
        out = Behaviour(**self.__dict__)
        if "version" in spec:
            if spec["version"] not in VERSIONS:
                raise ValueError(f"version must be one of {', '.join(VERSIONS)}")
            out.version = str(spec["version"])
        for name in ("rate_limit", "max_limit", "history_days"):
            if name in spec:
                setattr(out, name, int(spec[name]))
        if "end_id" in spec:
            if spec["end_id"] not in ("last-page", "never"):
                raise ValueError("end_id must be last-page or never")
            out.end_id = str(spec["end_id"])
        if "ignore_params" in spec:
            out.ignore_params = frozenset(str(p) for p in spec["ignore_params"])
        return out


@dataclass
class SimState:
    accounts: dict[str, SimAccount]  # by api_key
    faults: Faults = field(default_factory=Faults)
    behaviour: Behaviour = field(default_factory=Behaviour)
    per_account: dict[str, Behaviour] = field(default_factory=dict)
    requests: int = 0
    rate_limit_violations: int = 0
    by_account: dict[str, dict[str, int]] = field(default_factory=dict)
    admitted: dict[str, list[float]] = field(default_factory=dict)
    windows: dict[str, deque[float]] = field(default_factory=dict)
    hold_ms: dict[str, int] = field(default_factory=dict)  # one-shot, by alias

    def behaviour_of(self, alias: str) -> Behaviour:
        return self.per_account.get(alias, self.behaviour)

    def server_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.faults.clock_skew_ms

    def account_stats(self, alias: str) -> dict[str, int]:
        return self.by_account.setdefault(alias, {"requests": 0, "rate_limit_violations": 0})

    def reset(self) -> None:
        self.faults = Faults()
        self.behaviour = Behaviour()
        self.per_account.clear()
        self.admitted.clear()
        self.requests = 0
        self.rate_limit_violations = 0
        self.by_account.clear()
        self.windows.clear()
        self.hold_ms.clear()
        for account in self.accounts.values():
            account.rows = [dict(r) for r in account.original_rows]

    def by_alias(self, alias: str) -> SimAccount | None:
        return next((a for a in self.accounts.values() if a.alias == alias), None)


def _load_orders_file(path: str) -> dict[str, list[dict[str, Any]]]:
    data = read_orders_file(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of account alias -> rows")
    section = data.get("bitget")
    if isinstance(section, dict):
        data = section
    else:
        data = {k: v for k, v in data.items() if str(k).startswith("bitget")}
    out: dict[str, list[dict[str, Any]]] = {}
    for alias, rows in data.items():
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: {alias}: expected a list of rows")
        out[str(alias)] = [{str(k): _wire(v) for k, v in r.items()} for r in rows]
    return out


def _wire(value: Any) -> Any:
    """Bitget sends every scalar as a string; keep YAML's numbers from turning into JSON numbers."""
    if value is None or isinstance(value, str | list | dict):
        return value
    return str(value)


def _build_state(orders_file: str | None) -> SimState:
    rows_by_alias: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in DEMO_ROWS.items()}
    if orders_file:
        rows_by_alias.update(_load_orders_file(orders_file))
    accounts: dict[str, SimAccount] = {}
    for alias, rows in rows_by_alias.items():
        creds = credentials_for(alias)
        accounts[creds["api_key"]] = SimAccount(
            alias=alias,
            api_key=creds["api_key"],
            api_secret=creds["api_secret"],
            passphrase=creds["passphrase"],
            uid=creds["uid"],
            rows=rows,
            original_rows=[dict(r) for r in rows],
        )
    return SimState(accounts=accounts)


# --- responses ---------------------------------------------------------------------------------


def _envelope(state: SimState, data: Any) -> dict[str, Any]:
    return {"code": "00000", "msg": "success", "requestTime": state.server_ms(), "data": data}


def _error(state: SimState, status: int, code: str, msg: str) -> web.Response:
    body = {"code": code, "msg": msg, "requestTime": state.server_ms(), "data": None}
    return web.json_response(body, status=status)


def _state(request: web.Request) -> SimState:
    state: SimState = request.app["state"]
    return state


async def _common(request: web.Request) -> SimState:
    state = _state(request)
    state.requests += 1
    if state.faults.delay_ms > 0:
        await asyncio.sleep(state.faults.delay_ms / 1000)
    return state


def _authenticate(state: SimState, request: web.Request, body: str) -> SimAccount | web.Response:
    """Bitget's checks, in the order a gateway can make them."""
    key = request.headers.get("ACCESS-KEY", "")
    signature = request.headers.get("ACCESS-SIGN", "")
    timestamp = request.headers.get("ACCESS-TIMESTAMP", "")
    passphrase = request.headers.get("ACCESS-PASSPHRASE", "")
    if not key:
        return _error(state, 400, "40001", "ACCESS_KEY cannot be empty")
    if not signature:
        return _error(state, 400, "40003", "Signature cannot be empty")
    if not passphrase:
        return _error(state, 400, "40011", "ACCESS_PASSPHRASE cannot be empty")
    if not timestamp.isdigit():
        return _error(state, 400, "40005", "Invalid ACCESS_TIMESTAMP")
    account = state.accounts.get(key)
    if account is None:
        if not key.startswith("bg_"):
            return _error(state, 400, "40006", "Invalid ACCESS_KEY")
        return _error(state, 400, "40037", "Apikey does not exist")
    stats = state.account_stats(account.alias)
    stats["requests"] += 1
    if abs(state.server_ms() - int(timestamp)) > TIMESTAMP_WINDOW_MS:
        return _error(state, 400, "40008", "Request timestamp expired")
    if not hmac.compare_digest(passphrase, account.passphrase):
        return _error(state, 400, "40012", "apikey/password is incorrect")
    expected = sign(
        account.api_secret,
        timestamp,
        request.method,
        request.rel_url.raw_path,
        unquote(request.rel_url.raw_query_string),  # Bitget verifies the decoded query
        body,
    )
    if not hmac.compare_digest(signature, expected):
        return _error(state, 400, "40009", "sign signature error")
    return account


def _admit(state: SimState, account: SimAccount) -> bool:
    """Sliding one-second window per user ID over admitted requests."""
    now = time.monotonic()
    window = state.windows.setdefault(account.uid, deque())
    while window and window[0] <= now - RATE_WINDOW_S:
        window.popleft()
    if len(window) >= state.behaviour_of(account.alias).rate_limit:
        state.rate_limit_violations += 1
        state.account_stats(account.alias)["rate_limit_violations"] += 1
        return False
    window.append(now)
    admitted = state.admitted.setdefault(account.alias, [])
    if len(admitted) < 100_000:
        admitted.append(now)
    return True


def _fault_response(state: SimState, status: int) -> web.Response:
    if status == 429:
        return _error(state, 429, "429", "Too Many Requests")
    if status >= 500:
        reason = {
            502: "Bad Gateway",
            503: "Service Temporarily Unavailable",
            504: "Gateway Time-out",
        }
        text = reason.get(status, "Internal Server Error")
        return web.Response(
            status=status,
            text=f"<html><head><title>{status} {text}</title></head></html>",
            content_type="text/html",
        )
    return _error(state, status, "40015", "System is abnormal, please try again later")


def _int_param(value: str | None, default: int) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return None


# --- handlers ----------------------------------------------------------------------------------


async def handle_time(request: web.Request) -> web.Response:
    state = await _common(request)
    now = state.server_ms()
    return web.json_response(_envelope(state, {"serverTime": str(now)}))


async def handle_contracts(request: web.Request) -> web.Response:
    state = await _common(request)
    product_type = request.query.get("productType", "").upper()
    if not product_type:
        return _error(state, 400, "40019", "Parameter productType cannot be empty")
    if product_type not in _CONTRACTS:
        return _error(state, 400, "40017", "Parameter verification failed")
    symbol = request.query.get("symbol", "").upper()
    rows = [_contract_row(*c) for c in _CONTRACTS[product_type] if not symbol or c[0] == symbol]
    return web.json_response(_envelope(state, rows))


async def handle_current_orders(request: web.Request) -> web.Response:
    state = await _common(request)
    body = await request.text()
    auth = _authenticate(state, request, body)
    if isinstance(auth, web.Response):
        return auth
    account = auth
    if not _admit(state, account):
        return _error(state, 429, "429", "Too Many Requests")
    behaviour = state.behaviour_of(account.alias)
    if account.alias in _NOT_FOLLOWER:  # the only live capture of 40017 (ccxt #14533)
        msg = "Parameter verification failed {0},User idNot currently a trader"
        return _error(state, 400, "40017", msg)

    reference = behaviour.version == "reference"
    known = _REFERENCE_PARAMS if reference else _CURRENT_PARAMS
    # Unknown parameters (the other version's) and the configured ones are ignored.
    q = {k: v for k, v in request.query.items() if k in known and k not in behaviour.ignore_params}
    product_type = q.get("productType", "").upper()
    if not product_type:
        return _error(state, 400, "40019", "Parameter productType cannot be empty")
    if product_type not in _CONTRACTS:
        return _error(state, 400, "40017", "Parameter verification failed")

    faults = state.faults
    if faults.fail_next > 0:
        faults.fail_next -= 1
        return _fault_response(state, faults.fail_status)
    fault_page = _int_param(request.query.get("pageNo"), 1)  # the fault API's page numbering
    if faults.fail_on_page == fault_page and faults.fail_on_page_times > 0:
        faults.fail_on_page_times -= 1
        return _fault_response(state, faults.fail_on_page_status)

    symbol = q.get("symbol", "").upper()
    trader_id = q.get("traderId", "")
    rows = [
        r
        for r in account.rows
        if _SYMBOL_PRODUCT.get(str(r.get("symbol", "")).upper(), "USDT-FUTURES") == product_type
        and (not symbol or str(r.get("symbol", "")).upper() == symbol)
        and (not trader_id or str(r.get("traderId", "")) == trader_id)
    ]
    data: Any
    if reference:
        page_size = _int_param(q.get("pageSize"), DEFAULT_PAGE_SIZE)
        page_no = _int_param(q.get("pageNo"), 1)
        if page_size is None or page_no is None or page_size < 1 or page_no < 1:
            return _error(state, 400, "40017", "Parameter verification failed")
        if page_size > MAX_PAGE_SIZE:
            page_size = DEFAULT_PAGE_SIZE  # over the maximum: 20 rows, no error
        start = (page_no - 1) * page_size
        data = rows[start : start + page_size]
    else:
        answer = _current_page(state, behaviour, q, rows)
        if isinstance(answer, web.Response):
            return answer
        data = answer
    text = json.dumps(_envelope(state, data), ensure_ascii=False)
    if faults.malformed_next > 0:
        faults.malformed_next -= 1
        text = text[: max(1, len(text) // 2)]
    hold = state.hold_ms.pop(account.alias, 0)
    if hold > 0:
        await asyncio.sleep(hold / 1000)
    return web.Response(text=text, content_type="application/json")


def _in_window(row: dict[str, Any], start_ms: int, end_ms: int) -> bool:
    """On copy-trade creation time; a row without a readable one (malformed test data) is
    always served, so the client gets to see it."""
    opened = str(row.get("openTime", ""))
    return not opened.isdigit() or start_ms <= int(opened) <= end_ms


def _current_page(
    state: SimState, behaviour: Behaviour, q: dict[str, str], rows: list[dict[str, Any]]
) -> Any:
    """The current version: time window, cursor, ``limit``; a list or ``{trackingList, endId}``."""
    limit = _int_param(q.get("limit"), DEFAULT_PAGE_SIZE)
    if limit is None:
        return _error(state, 400, "40017", "Parameter verification failed")
    if limit < 1 or limit > behaviour.max_limit:
        limit = DEFAULT_PAGE_SIZE  # over the maximum: 20 rows, no error
    cursors: list[int | None] = []
    for name in ("idLessThan", "idGreaterThan"):
        value = q.get(name, "")
        if value and not value.isdigit():
            return _error(state, 400, "40700", "Cursor parameters are incorrect")
        cursors.append(int(value) if value else None)
    less, greater = cursors
    now = state.server_ms()
    start_ms = _int_param(q.get("startTime"), -1)
    end_ms = _int_param(q.get("endTime"), -1)
    if start_ms is None or end_ms is None:
        return _error(state, 400, "40017", "Parameter verification failed")
    if start_ms < 0 and end_ms < 0:
        start_ms, end_ms = now - THREE_MONTHS_MS, now
    elif start_ms < 0:
        start_ms = end_ms - THREE_MONTHS_MS
    elif end_ms < 0:
        end_ms = min(start_ms + THREE_MONTHS_MS, now)
    if start_ms > end_ms:
        return _error(state, 400, "40707", "Start time is greater than end time")
    if end_ms - start_ms > THREE_MONTHS_MS:
        return _error(state, 400, "40705", "The start and end time cannot exceed 90 days")
    if start_ms < now - behaviour.history_days * DAY_MS:
        return _error(state, 400, "40704", "Can only check the data of the last three months")

    def key(r: dict[str, Any]) -> int:
        number = str(r.get("trackingNo", ""))
        return int(number) if number.isdigit() else 0

    selected = sorted(
        (
            r
            for r in rows
            if _in_window(r, start_ms, end_ms)
            and (less is None or key(r) < less)
            and (greater is None or key(r) > greater)
        ),
        key=key,
        reverse=True,
    )
    page = selected[:limit]
    if behaviour.version == "current-list":
        return page
    more = len(selected) > len(page) and behaviour.end_id == "last-page"
    return {"trackingList": page, "endId": str(page[-1]["trackingNo"]) if more else ""}


# --- control API -------------------------------------------------------------------------------


async def handle_faults(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        spec = await request.json()
    except (json.JSONDecodeError, ValueError):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    if not isinstance(spec, dict):
        return web.json_response({"error": "body must be a JSON object"}, status=400)
    f = state.faults
    try:
        status = int(spec.get("status", 503))
        if "fail_next" in spec:
            f.fail_next = int(spec["fail_next"])
            f.fail_status = status
        if "fail_on_page" in spec:
            f.fail_on_page = int(spec["fail_on_page"])
            f.fail_on_page_times = int(spec.get("times", 1))
            f.fail_on_page_status = status
        if "delay_ms" in spec:
            f.delay_ms = int(spec["delay_ms"])
        if "malformed_next" in spec:
            f.malformed_next = int(spec["malformed_next"])
        if "clock_skew_ms" in spec:
            f.clock_skew_ms = int(spec["clock_skew_ms"])
    except (TypeError, ValueError):
        return web.json_response({"error": "fault values must be integers"}, status=400)
    return web.json_response({"faults": f.__dict__})


async def handle_config(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        spec = await request.json()
        if not isinstance(spec, dict):
            raise ValueError("body must be a JSON object")
        accounts = spec.pop("accounts", {}) or {}
        behaviour = state.behaviour.update(spec)
        per_account = {str(a): behaviour.update(s) for a, s in dict(accounts).items()}
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.behaviour = behaviour
    state.per_account.update(per_account)
    return web.json_response({"ok": True})


async def handle_stats(request: web.Request) -> web.Response:
    state = _state(request)
    by_account: dict[str, dict[str, Any]] = {}
    for alias, counts in state.by_account.items():
        admitted = state.admitted.get(alias, [])
        span = admitted[-1] - admitted[0] if admitted else 0.0
        by_account[alias] = {**counts, "admitted": len(admitted), "span_s": span}
    return web.json_response(
        {
            "requests": state.requests,
            "rate_limit_violations": state.rate_limit_violations,
            "by_account": by_account,
        }
    )


async def handle_get_orders(request: web.Request) -> web.Response:
    account = _state(request).by_alias(request.query.get("account", ""))
    if account is None:
        return web.json_response({"error": "unknown account"}, status=404)
    return web.json_response({"rows": account.rows})


async def handle_set_orders(request: web.Request) -> web.Response:
    try:
        spec = await request.json()
        if not isinstance(spec, dict):
            raise ValueError("body must be a JSON object")
        account = _state(request).by_alias(str(spec.get("account", "")))
        if account is None:
            return web.json_response({"error": "unknown account"}, status=404)
        remove = {str(t) for t in spec.get("remove", [])}
        upsert = [{str(k): _wire(v) for k, v in dict(r).items()} for r in spec.get("upsert", [])]
        hold = int(spec.get("hold_next_ms", 0))
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    rows = [r for r in account.rows if str(r.get("trackingNo")) not in remove]
    for new in upsert:
        tn = str(new.get("trackingNo"))
        idx = next((i for i, r in enumerate(rows) if str(r.get("trackingNo")) == tn), None)
        if idx is None:
            rows.append(new)
        else:
            rows[idx] = {**rows[idx], **new}
    account.rows = rows
    if hold > 0:
        _state(request).hold_ms[account.alias] = hold
    return web.json_response({"rows": rows})


async def handle_reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"ok": True})


def create_app(orders_file: str | None = None) -> web.Application:
    """A fresh simulator; all state lives in ``app["state"]`` so several can run side by side."""
    app = web.Application()
    with warnings.catch_warnings():
        # aiohttp prefers AppKey; the string key is the documented contract of this module.
        warnings.simplefilter("ignore")
        app["state"] = _build_state(orders_file)
    app.router.add_get(PATH_TIME, handle_time)
    app.router.add_get(PATH_CONTRACTS, handle_contracts)
    app.router.add_get(PATH_ORDERS, handle_current_orders)
    app.router.add_post("/__sandbox/faults", handle_faults)
    app.router.add_post("/__sandbox/config", handle_config)
    app.router.add_get("/__sandbox/stats", handle_stats)
    app.router.add_post("/__sandbox/reset", handle_reset)
    app.router.add_get("/__sandbox/orders", handle_get_orders)
    app.router.add_post("/__sandbox/orders", handle_set_orders)
    return app
