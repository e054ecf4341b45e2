"""The Faust worker (``connector worker``), one concern per module.

Module map:

* :mod:`.app`: the :class:`Connector`: builds the Faust app, the state table and the
  ``query-orders`` agent, wires the modules below together; the agent loop (with its redelivery
  guard: it hands each command to the lanes), a command's run in its lane (route, handle,
  ack) and ``handle()`` (one command: pipeline, outputs, state, metrics, log line).
* :mod:`.lanes`: the bulkheads: one lane per venue running its commands as tasks under the
  venue's limit (a freed slot to the account with the fewest running), the cap on commands
  held (the backpressure), the drain at shutdown.
* :mod:`.outcomes`: an outcome's records encoded and published in contract order; a refused
  outcome replaced by a FAILED one.
* :mod:`.publisher`: the ``Publisher`` seam (send records, wait for their acks):
  ``KafkaPublisher`` (all aiokafka record batching) and ``InMemoryPublisher`` (tests).
* :mod:`.outages`: outage or refusal (``is_outage``), backoff and its log lines (``Outages``),
  and the one retry loop of every write (``Outages.until_acked``).
* :mod:`.state_writer`: an account's state: snapshots applied under its lock, stored, then
  published on the state topic; queued snapshots written together.
* :mod:`.state_store`: the ``StateStore`` seam (load/store an account's state, as a header
  and chunks): ``FaustTableStore`` (the changelogged table) and ``InMemoryStateStore`` (tests).
* :mod:`.routing`: commands routed to their account's partition, forwarded when needed;
  the partition-count check at start.
* :mod:`.standing`: standing queries: the progress GlobalTable, the leader's timer, the
  schedules file checked at start.
* :mod:`.health`: liveness (``Liveness``), readiness, ``/status``, the web pages, the health
  server while waiting for the broker.
* :mod:`.lifecycle`: start-up: ``run_worker`` and the "ready" line.
* :mod:`.shutdown`: the shutdown hook (drain the lanes, final commit).
* :mod:`.faust_internals`: the Kafka transport's corrections (commit rule, holes, fetch wait)
  and every use of Faust's or aiokafka's private names, behind small public functions.
"""

from __future__ import annotations

from .app import Connector
from .lifecycle import run_worker

__all__ = ["Connector", "run_worker"]
