"""The naive baseline of ``make bench``: the same flow written the obvious way, as a Faust worker.

Per command: a new AscendEX WebSocket (connect, greeting, ``op: auth``, one
``futures-open-orders`` request, close), ``json.loads`` of the reply, a plain dict per order
encoded with ``fastavro`` (Avro single-object, the connector's own OrderEvent schema), one
awaited ``topic.send`` per event (the issue's "one awaited ``topic.send`` per event": the await
hands the record to Faust's producer buffer and returns its delivery future), then the snapshot's
acks are awaited together and only then the QueryResult is sent and its ack awaited. So it keeps
the delivery order the contract asks for (every event acked, acks=all, before the result) without
a broker round trip per event, which would make it a strawman (awaiting each event's ack
serialized the flow at about 1,400 events/s). It does none of the connector's work: no
validation, no exact decimal normalization, no sanitizing, no retries, no session reuse.

Run by scripts/bench.py as ``python scripts/bench_naive.py worker`` with the bench's environment
(``CONNECTOR_KAFKA_BOOTSTRAP``, ``CONNECTOR_ASCENDEX_WS_URL``, ``NAIVE_*`` topic names and the
accounts file). Not part of the product.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import faust
import yaml
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from connector import codec  # noqa: E402
from connector.exchanges.ascendex.auth import SignKey, ws_auth_message  # noqa: E402

ORDER = codec.schema(codec.ORDER_EVENT)
RESULT = codec.schema(codec.QUERY_RESULT)
ACCOUNTS: dict[str, Any] = yaml.safe_load(Path(os.environ["CONNECTOR_ACCOUNTS_FILE"]).read_text())
GROUPS = {k: int(v) for k, v in json.loads(os.environ["NAIVE_GROUPS"]).items()}
WS_URL = os.environ["CONNECTOR_ASCENDEX_WS_URL"].rstrip("/")

app = faust.App(
    os.environ.get("NAIVE_APP_ID", "bench-naive"),
    broker=f"kafka://{os.environ['CONNECTOR_KAFKA_BOOTSTRAP']}",
    producer_acks=-1,
    key_serializer="raw",
    value_serializer="raw",
    topic_disable_leader=True,
    topic_allow_declare=False,
    broker_session_timeout=6,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
    web_port=int(os.environ["NAIVE_WEB_PORT"]),
    web_host="127.0.0.1",
    datadir=os.environ["NAIVE_DATA_DIR"],
)
app.conf.consumer_max_fetch_size = 1 << 20
commands = app.topic(os.environ["NAIVE_COMMANDS"], key_serializer="raw", value_serializer="raw")
orders = app.topic(os.environ["NAIVE_ORDERS"], key_serializer="raw", value_serializer="raw")
results = app.topic(os.environ["NAIVE_RESULTS"], key_serializer="raw", value_serializer="raw")


def avro(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return codec.SINGLE_OBJECT_MAGIC + schema.fingerprint + buf.getvalue()


async def fetch(account: str) -> list[dict[str, Any]]:
    creds = ACCOUNTS["accounts"][account] if "accounts" in ACCOUNTS else ACCOUNTS[account]
    url = f"{WS_URL}/{GROUPS[account]}/api/pro/v2/stream"
    async with connect(url, max_size=1 << 24, ping_interval=None) as ws:
        json.loads(await ws.recv())  # greeting
        frame = ws_auth_message(
            creds["api_key"], creds["api_secret"], int(time.time() * 1000), "a1", SignKey.BASE64
        )
        await ws.send(json.dumps(frame))
        json.loads(await ws.recv())
        await ws.send(json.dumps({"op": "req", "id": "q1", "action": "futures-open-orders",
                                  "args": {}}))  # fmt: skip
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("m") == "futures-open-orders":
                rows: list[dict[str, Any]] = reply["data"]
                return rows


def event(row: dict[str, Any], cmd: dict[str, Any], seq: int, size: int) -> dict[str, Any]:
    def num(k: str) -> str | None:
        v = row.get(k)
        return None if v in (None, "", "0") else str(v)

    return {
        "event_id": str(uuid.uuid4()), "request_id": cmd["request_id"], "exchange": "ascendex",
        "account": cmd["account"], "account_id": row.get("accountId"), "product_type": "FUTURES",
        "order_id": row["orderId"], "client_order_id": None, "symbol": row["symbol"],
        "unified_symbol": None, "side": row["side"].upper(), "position_side": None,
        "order_type": "LIMIT", "status": "NEW", "price": num("price"), "quantity": num("orderQty"),
        "filled_quantity": row.get("cumFilledQty"), "remaining_quantity": None,
        "average_fill_price": num("avgFilledPx"), "stop_price": num("stopPrice"),
        "fee": row.get("cumFee"), "fee_asset": row.get("feeAsset"), "leverage": None,
        "margin": None, "created_at": row.get("time"), "updated_at": row.get("lastExecTime"),
        "observed_at": int(time.time() * 1000), "copy_trading": None, "snapshot_seq": seq,
        "snapshot_size": size, "raw": json.dumps(row),
    }  # fmt: skip


@app.agent(commands, concurrency=int(os.environ.get("NAIVE_CONCURRENCY", "8")))
async def handle(stream: Any) -> None:
    async for value in stream:
        cmd = json.loads(value)
        started = int(time.time() * 1000)
        rows = await fetch(cmd["account"])
        headers = {"request_id": cmd["request_id"].encode()}
        acks = []
        for seq, row in enumerate(rows, 1):
            acks.append(  # one awaited send per event: buffered, returns the delivery future
                await orders.send(
                    key=f"ascendex:{cmd['account']}:{row['orderId']}".encode(),
                    value=avro(ORDER, event(row, cmd, seq, len(rows))),
                    headers=headers,
                )
            )
        await asyncio.gather(*acks)  # every event acked before the result is sent
        result = {
            "request_id": cmd["request_id"], "exchange": "ascendex", "account": cmd["account"],
            "symbol": None, "status": "OK", "order_count": len(rows), "error_code": None,
            "requested_at": None, "started_at": started,
            "completed_at": int(time.time() * 1000), "exchange_calls": 1,
        }  # fmt: skip
        fut = await results.send(key=b"k", value=avro(RESULT, result), headers=headers)
        await fut


if __name__ == "__main__":
    app.main()
