"""``connector broker`` can be started again on its port at once after it stopped.

A stopped broker leaves its connections in TIME-WAIT (FIN-WAIT-2 first) on its port for about a
minute. The broker itself listens with ``SO_REUSEADDR`` (as Tansu and most servers do), so those
sockets do not stop a new listener; the port check before starting must agree, while a port some
process still listens on is refused.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from connector.broker import port_in_use

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX SO_REUSEADDR semantics")


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what the broker does
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.fixture
def lingering_port() -> Iterator[int]:
    """A port whose listener is gone but whose server side closed a connection first, so that
    connection lingers on the port (FIN-WAIT-2, then TIME-WAIT), as after a broker's SIGTERM."""
    listener = _listener()
    port: int = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    listener.close()
    served.close()  # the server closes first: its side of the connection lingers
    assert client.recv(1) == b""  # the server's FIN arrived
    client.close()
    yield port


def test_a_port_with_only_lingering_connections_is_free(lingering_port: int) -> None:
    # The connection really lingers on the port: a plain bind is still refused...
    with socket.socket() as plain, pytest.raises(OSError) as refused:
        plain.bind(("127.0.0.1", lingering_port))
    assert refused.value.errno == errno.EADDRINUSE
    # ...but a broker can listen there, and the check says so.
    assert port_in_use("127.0.0.1", lingering_port) is None


def test_a_port_with_a_listener_is_in_use() -> None:
    with _listener() as live:
        assert port_in_use("127.0.0.1", live.getsockname()[1]) == "already in use"


def test_a_port_with_a_plain_listener_is_in_use() -> None:
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        assert port_in_use("127.0.0.1", live.getsockname()[1]) == "already in use"
