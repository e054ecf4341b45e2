"""The ``connector`` command line (see docs/contract.md, "Command line")."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from .errors import ConfigurationError
from .settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="connector",
        description="Exchange order connector. Configuration comes from CONNECTOR_* variables.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the Faust worker")

    sub.add_parser(
        "broker",
        help="run the embedded Kafka-compatible broker on CONNECTOR_KAFKA_BOOTSTRAP (dev/tests)",
    )

    s = sub.add_parser("sandbox", help="run a local simulator of every registered venue")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument(
        "--public-host", help="host name workers use to reach the simulators (default: --host)"
    )
    s.add_argument(
        "--port",
        action="append",
        default=[],
        type=_venue_port,
        metavar="VENUE=PORT",
        help="fixed port for one venue's simulator (repeatable; default: any free port)",
    )
    s.add_argument("--workdir", help="where to write accounts.yaml (default: a new temp dir)")
    s.add_argument("--orders-file", help="YAML: account alias -> raw exchange orders")

    q = sub.add_parser("query", help="publish one query-orders command")
    q.add_argument("--exchange", required=True)
    q.add_argument("--account", required=True)
    q.add_argument("--symbol")
    q.add_argument("--product-type")
    q.add_argument("--trader-id")
    q.add_argument("--request-id", help="default: a new UUID")
    q.add_argument(
        "--deadline-ms",
        type=int,
        help="absolute UTC epoch milliseconds (default: now + --timeout, so a command nobody "
        "waits for any more is answered EXPIRED instead of being run late)",
    )
    q.add_argument("--avro", action="store_true", help="send the command as Avro, not JSON")
    q.add_argument("--wait", action="store_true", help="print the outputs; exit 0 OK / 1 FAILED")
    q.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (exit 2 after)")

    t = sub.add_parser("tail", help="decode an output topic as JSON lines")
    t.add_argument("topic")
    t.add_argument("--latest", action="store_true", help="only new records (default: from start)")
    t.add_argument("--max-messages", type=int)
    t.add_argument("--idle-timeout", type=float, help="exit after this many seconds of silence")

    st = sub.add_parser("state", help="print an account's open orders from the state topic")
    st.add_argument("--exchange", required=True)
    st.add_argument("--account", required=True)
    st.add_argument("--symbol", help="only this symbol's orders")
    st.add_argument("--format", choices=("jsonl", "summary"), default="jsonl")
    st.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this silence")
    return p


def _venue_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not name or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected VENUE=PORT, got {text!r}")
    return name.strip().lower(), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        return _dispatch(args, settings)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from .logs import setup

    if args.command == "worker":
        from .worker import run_worker

        run_worker(settings)
        return 0
    setup(settings.log_level if args.command != "query" else "WARNING", settings.log_format)
    if args.command == "broker":
        from .broker import run_broker

        return run_broker(settings)
    if args.command == "sandbox":
        from .sandbox.server import run_forever

        asyncio.run(
            run_forever(
                host=args.host,
                public_host=args.public_host,
                ports=dict(args.port),
                workdir=args.workdir,
                orders_file=args.orders_file,
            )
        )
        return 0
    if args.command == "query":
        from .client import build_command, query

        command = build_command(
            exchange=args.exchange,
            account=args.account,
            request_id=args.request_id,
            symbol=args.symbol,
            product_type=args.product_type,
            trader_id=args.trader_id,
            deadline_ms=args.deadline_ms
            if args.deadline_ms is not None
            else int(time.time() * 1000 + args.timeout * 1000),
        )
        return asyncio.run(
            query(settings, command, wait=args.wait, timeout=args.timeout, avro=args.avro)
        )
    if args.command == "tail":
        from .client import tail

        return asyncio.run(
            tail(
                settings,
                args.topic,
                from_beginning=not args.latest,
                max_messages=args.max_messages,
                idle_timeout=args.idle_timeout,
            )
        )
    if args.command == "state":
        from .statetopic import state_command

        return asyncio.run(
            state_command(
                settings,
                args.exchange,
                args.account,
                symbol=args.symbol,
                fmt=args.format,
                idle_timeout=args.idle_timeout,
            )
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
