"""The listening socket shared by several uvicorn workers has Nagle's algorithm off."""

from __future__ import annotations

import socket

import pytest
import uvloop
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.core.settings import Settings, SettingsError
from gateway.http.serving import _NoDelayConfig, server_stack

DEV = {"SCHOOL_GATEWAY_DEV": "1"}


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


def test_serve_uses_uvloop_and_httptools_by_default() -> None:
    loop, http = server_stack(Settings.from_env(DEV).server)
    assert (loop, http) == ("uvloop", "httptools")
    config = _NoDelayConfig(
        "gateway.app:app_from_env", factory=True, host="127.0.0.1", port=0, loop=loop, http=http
    )
    assert config.http == "httptools"
    assert import_from_string(HTTP_PROTOCOLS["httptools"]) is HttpToolsProtocol
    assert config.get_loop_factory() is uvloop.new_event_loop


def test_pure_python_server_stack_on_request() -> None:
    settings = Settings.from_env({**DEV, "SCHOOL_GATEWAY_SERVER": "asyncio"})
    assert server_stack(settings.server) == ("asyncio", "h11")
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_SERVER"):
        Settings.from_env({**DEV, "SCHOOL_GATEWAY_SERVER": "tornado"})
