"""Publishing a command's outcome in contract order: the order events, then the
ErrorEvent/QueryResult (README "Guarantees", docs/contract.md).

The order events must all be acknowledged before the ErrorEvent/QueryResult, so a consumer that
sees the result knows the snapshot is complete. A broker or registry outage is waited out
rather than dropping or failing the command: the input offset is not committed meanwhile, so
nothing is lost. An outcome the broker refuses for good (e.g. larger than its message limit) is
replaced by a FAILED ``INTERNAL`` outcome without the echo, so the command is still answered
exactly once.
"""

from __future__ import annotations

import logging
from functools import partial

from ..codec import Serializer
from ..errors import InternalError
from ..pipeline import Outcome, OutputRecord, Pipeline
from ..settings import Settings
from .outages import Outages, refusal_name
from .publisher import Publisher, Record

log = logging.getLogger(__name__)


def utf8(text: str) -> bytes:
    """A key or header value as sent (a lone surrogate cannot fail the send)."""
    return text.encode("utf-8", "backslashreplace")


class OutcomeWriter:
    """Encodes an outcome's records for their topics and publishes them in contract order."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        serializer: Serializer,
        publisher: Publisher,
        outages: Outages,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.serializer = serializer
        self.publisher = publisher
        self.outages = outages

    async def publish(
        self,
        outcome: Outcome,
        value: bytes | None = None,
        encoded: dict[int, bytes] | None = None,
    ) -> Outcome:
        """Called by the agent (Connector.handle) for every command: publish in contract order,
        retrying until the broker acknowledges; returns what was published (``outcome``, or its
        FAILED replacement when the broker refused it for good). ``value`` is the command as
        received (for the replacement); ``encoded`` collects the order events' encoded values
        by id of the value, for the state writer."""
        replaced = False
        while True:
            refused = await self.outages.until_acked(partial(self._send, outcome, encoded))
            if refused is None:
                return outcome
            if not replaced:
                cause = refusal_name(refused)
                log.error(
                    "outputs refused by the broker (%s); answering FAILED instead",
                    cause,
                    extra={"request_id": outcome.request_id, "exchange": outcome.exchange},
                )
                outcome = self.pipeline.failure(
                    value, InternalError(f"outputs could not be published: {cause}"), echo=False
                )
                replaced = True
            else:  # even the minimal FAILED outcome was refused: nothing left but waiting
                log.error(
                    "publishing the FAILED outcome refused (%s); retrying", refusal_name(refused)
                )
                await self.outages.wait("broker", refused)

    async def _send(self, outcome: Outcome, encoded: dict[int, bytes] | None) -> None:
        await self.publisher.send(await self.encode(outcome.orders, encoded))
        tail = [r for r in (outcome.error, outcome.result) if r is not None]
        await self.publisher.send(await self.encode(tail))

    async def encode(
        self, records: list[OutputRecord], keep: dict[int, bytes] | None = None
    ) -> list[Record]:
        """``records`` encoded for their topics; ``keep`` collects the encoded values by id of
        the value."""
        encoded: list[Record] = []
        last: tuple[dict[str, str] | None, list[tuple[str, bytes]]] = (None, [])
        for rec in records:
            topic = self.settings.topic_for(rec.role)
            value = await self.serializer.encode(topic, rec.schema, rec.value)
            if keep is not None:
                keep[id(rec.value)] = value
            key = utf8(rec.key) if rec.key is not None else None
            if rec.headers is not last[0]:  # a snapshot's events share one headers dict
                last = (rec.headers, [(k, utf8(v)) for k, v in rec.headers.items()])
            encoded.append(Record(topic, key, value, last[1]))
        return encoded
