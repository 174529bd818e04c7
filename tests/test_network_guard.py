import socket

import pytest

from tests.conftest import NetworkBlocked


def test_outbound_connection_is_blocked() -> None:
    with socket.socket() as sock, pytest.raises(NetworkBlocked):
        sock.connect(("203.0.113.7", 443))


def test_loopback_connection_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
            conn, _ = server.accept()
            conn.close()
