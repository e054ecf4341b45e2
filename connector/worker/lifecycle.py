"""Starting the worker: ``connector worker`` (:func:`run_worker`) and the one "ready" log line.
The shutdown hook that drains and makes the final commit is in connector/worker/shutdown.py.

At start a missing broker is an outage like any other: the worker waits for it (serving
/healthz meanwhile) instead of letting Faust give up after its first connection attempt, then
creates the internal topics Faust may not declare, and checks the partition counts routing
relies on. At shutdown (SIGTERM/SIGINT) Faust has stopped fetching but its agents still run:
the commands in flight finish (bounded by ``shutdown_drain_s``), no new one starts, then what
was answered is committed so the next owner of these partitions does not repeat it.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import sys
from typing import Any

import faust

from ..account import Accounts
from ..accounts_file import load_accounts
from ..errors import ConfigurationError
from ..logs import logging_config
from ..settings import Settings
from ..statetopic import ensure_internal_topics
from ..version import __version__
from .app import Connector
from .health import await_broker_serving_health
from .routing import check_by_account_retention, check_routing_partitions
from .standing import load_checked_schedules

log = logging.getLogger(__name__)


def ready_line(settings: Settings, accounts: Accounts, venues: Any) -> dict[str, Any]:
    """The fields of the one "ready" log line (no secrets: account aliases only)."""
    per_venue: dict[str, list[str]] = {name: [] for name in sorted(venues)}
    for account in accounts:
        per_venue.setdefault(account.exchange, []).append(account.alias)
    return {
        "version": __version__,
        "bootstrap": settings.kafka_bootstrap,
        "group": settings.app_id,
        "topics": {**settings.topics, "state": settings.topic_state},
        "venues": sorted(venues),
        "accounts": {k: sorted(v) for k, v in per_venue.items()},
        "web_port": settings.web_port,
    }


class _Worker(faust.Worker):
    """Faust's worker, with no spinner when stdout is not a terminal (no control codes in
    logs) and one "ready" line when start-up has finished."""

    def __init__(self, *args: Any, ready: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = ready
        if not self.stdout.isatty():
            self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        r = self._ready
        log.info(
            "ready: connector %s, bootstrap %s, group %s, topics %s, venues %s, accounts %s, "
            "web port %s",
            r["version"], r["bootstrap"], r["group"],
            ", ".join(f"{k}={v}" for k, v in r["topics"].items()), ", ".join(r["venues"]),
            "; ".join(f"{k}: {', '.join(v) or '-'}" for k, v in r["accounts"].items()),
            r["web_port"],
            extra={"ready": r},
        )  # fmt: skip


def run_worker(settings: Settings) -> None:
    """``connector worker``: load accounts, build the app, run until SIGTERM/SIGINT."""

    if not settings.accounts_file:
        raise ConfigurationError("CONNECTOR_ACCOUNTS_FILE: required for the worker")
    accounts = load_accounts(settings.accounts_file)
    schedules = load_checked_schedules(settings, accounts)
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(await_broker_serving_health(settings))
        # Faust may not declare topics (topic_allow_declare=False): create the state topic and
        # the internal ones (by-account commands, table changelog) if missing.
        created = loop.run_until_complete(ensure_internal_topics(settings))
        if created:
            log.info("created topics: %s", ", ".join(created))
        direct = loop.run_until_complete(check_routing_partitions(settings))
        loop.run_until_complete(check_by_account_retention(settings))
    finally:
        loop.close()
    connector = Connector(settings, accounts, schedules=schedules, direct_partitions=direct)
    worker = _Worker(
        connector.app,
        ready=ready_line(settings, accounts, connector.venues),
        quiet=not sys.stdout.isatty(),  # Faust's banner and spinner are for terminals
        loglevel=settings.log_level,
        logging_config=logging_config(settings.log_level, settings.log_format),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
