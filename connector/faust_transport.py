"""A Faust Kafka transport whose consumer long-poll wait is configurable.

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Against Apache Kafka that
is harmless: the broker answers a waiting fetch as soon as data arrives. The embedded development
broker (Tansu) answers only when the wait expires, which adds up to 1.5 s to every command. The
wait is therefore a setting (``CONNECTOR_KAFKA_FETCH_MAX_WAIT_MS``) whose default is Faust's own
1500 ms; the demo, tests and benchmarks lower it for the embedded broker only.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def _thread_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.AIOKafkaConsumerThread]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka reads this attribute when it builds its fetcher at start().
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    return ConsumerThread


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    thread_class = _thread_class(fetch_max_wait_ms)

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread_class(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    return Transport


class App(faust.App):
    """faust.App using :func:`transport_class` for its Kafka transport."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self._transport_class = transport_class(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)
