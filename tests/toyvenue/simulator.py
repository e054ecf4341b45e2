"""ToyEx simulator: checks key, timestamp and signature, serves each desk's orders by book."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from .auth import sign

API_KEY = "toy-key-0123456789"
API_SECRET = "toy-secret-abcdefghijklmnop"
ORDERS = {
    ("d1", "main"): [
        {"id": 11, "sym": "TOY-USD", "side": "b", "px": "1.10", "qty": "3"},
        {"id": 12, "sym": "TOY-USD", "side": "s", "px": "1.30", "qty": "0.5"},
    ],
    ("d1", "side"): [{"id": 21, "sym": "TOY-EUR", "side": "s", "px": "0.90", "qty": "7"}],
}


def demo_accounts() -> dict[str, dict[str, Any]]:
    return {
        "toy-demo": {
            "exchange": "toyex",
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "options": {"desk": "d1"},
        }
    }


async def open_orders(request: web.Request) -> web.Response:
    ts = request.headers.get("X-TOY-TS", "")
    expected = sign(API_SECRET, ts, request.path, request.query_string)
    if request.headers.get("X-TOY-KEY") != API_KEY or not hmac.compare_digest(
        request.headers.get("X-TOY-SIGN", ""), expected
    ):
        return web.json_response({"error": "bad signature"}, status=401)
    key = (request.query.get("desk", ""), request.query.get("book", ""))
    rows = [r for r in ORDERS.get(key, []) if r["sym"] == request.query.get("symbol", r["sym"])]
    return web.json_response({"orders": rows})


def create_app(orders_file: str | None = None) -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/open-orders", open_orders)
    return app
