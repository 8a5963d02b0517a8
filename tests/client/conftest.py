"""The client's tests talk HTTP and WebSocket to a live server process exactly as a bot would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import LiveServer, start_server, stop_server


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory) -> Iterator[LiveServer]:
    live = start_server(settings, tmp_path_factory.mktemp("client") / "server.log")
    try:
        yield live
    finally:
        stop_server(live.proc)
