"""Starting and stopping the worker: ``connector worker`` (:func:`run_worker`), the one "ready"
log line, the Kafka credentials, and the shutdown hook that drains and makes the final commit.

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
from typing import TYPE_CHECKING, Any

import faust

from ..accounts import Accounts, load_accounts
from ..errors import ConfigurationError
from ..kafka import ssl_context
from ..logs import logging_config
from ..settings import Settings
from ..statetopic import ensure_internal_topics
from ..version import __version__
from .faust_internals import committed_offsets, uncommitted_acks
from .health import await_broker_serving_health
from .routing import check_routing_partitions
from .standing import load_checked_schedules

if TYPE_CHECKING:
    from .app import Connector

log = logging.getLogger(__name__)


def credentials(settings: Settings) -> Any:
    """Faust's broker credentials for the configured security protocol (None: plaintext)."""
    ctx = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


async def drain_and_commit(connector: Connector) -> None:
    """Called by Faust (``on_before_shutdown``, connected by the Connector) when the worker
    stops: sets the connector draining (the agent starts no new command), waits for the
    commands in flight, commits the acknowledged offsets, closes the exchange adapters and the
    serializer."""
    connector.draining = True
    settings = connector.settings
    try:
        await asyncio.wait_for(connector.liveness.wait_idle(), settings.shutdown_drain_s)
    except TimeoutError:
        log.warning(
            "%d commands still in flight after %.0fs; abandoning them uncommitted",
            connector.liveness.pending,
            settings.shutdown_drain_s,
        )
    consumer: Any = connector.app.consumer
    try:  # diagnostics for the known gap in README "Guarantees" (repeats after SIGTERM)
        log.debug(
            "shutdown: acked-but-uncommitted %s, committed %s",
            uncommitted_acks(consumer),
            committed_offsets(consumer),
        )
    except Exception:  # noqa: S110 - Faust internals; diagnostics only
        pass
    try:
        # Twice: a commit already running when we get here returns without committing
        # the acks that came after it started.
        committed = False
        for _ in range(2):
            committed = await asyncio.wait_for(consumer.commit(), 10) or committed
        log.info("final commit of acknowledged offsets: %s", "done" if committed else "none")
    except Exception as exc:  # best effort: at worst the next owner repeats them
        log.warning("final commit failed: %s", type(exc).__name__)
    for adapter in connector.adapters.values():
        try:
            await adapter.aclose()
        except Exception:
            log.exception("closing exchange adapter failed")
    await connector.serializer.aclose()


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
    from .app import Connector  # app.py imports this module (credentials, drain_and_commit)

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
