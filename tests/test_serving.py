"""The listening socket shared by several uvicorn workers has Nagle's algorithm off."""

from __future__ import annotations

import socket

from gateway.serving import _NoDelayConfig


def test_shared_listening_socket_has_tcp_nodelay() -> None:
    config = _NoDelayConfig("gateway.app:app_from_env", factory=True, host="127.0.0.1", port=0)
    sock = config.bind_socket()
    try:
        sock.listen()
        client = socket.create_connection(sock.getsockname())
        accepted, _ = sock.accept()
        with client, accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()
