"""The producer's partitioner puts every key where aiokafka's DefaultPartitioner (and so the
Java client) would: a consumer relying on per-key partitions sees no change."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.kafka import kafka_partitioner, murmur2


def test_murmur2_equals_aiokafkas_on_many_random_keys() -> None:
    rng = random.Random(11)
    for _ in range(20_000):
        key = rng.randbytes(rng.randrange(0, 120))
        assert murmur2(key) == aiokafka_murmur2(key)


@settings(max_examples=500, deadline=None)
@given(key=st.binary(max_size=300))
def test_murmur2_equals_aiokafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_known_values() -> None:
    # Kafka's own test vectors (clients/src/test/java/.../UtilsTest.java, testMurmur2), as the
    # signed ints Java prints.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in cases.items():
        assert murmur2(key) == signed & 0xFFFFFFFF


@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=0, max_size=80),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_same_partition_as_aiokafkas_default_partitioner(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    assert kafka_partitioner(key, all_partitions, all_partitions) == DefaultPartitioner()(
        key, all_partitions, all_partitions
    )


def test_connector_keys_land_where_they_did() -> None:
    keys = [f"ascendex:desk-{a}:{o:018d}".encode() for a in range(5) for o in range(400)]
    for partitions in (1, 3, 6, 12):
        all_partitions = list(range(partitions))
        for key in keys:
            expected = DefaultPartitioner()(key, all_partitions, all_partitions)
            assert kafka_partitioner(key, all_partitions, []) == expected


def test_no_key_goes_to_an_available_partition() -> None:
    chosen = {kafka_partitioner(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert {kafka_partitioner(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
