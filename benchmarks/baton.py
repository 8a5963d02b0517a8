"""pytest plugin for the latency gate: the reference and the candidate process take turns, call by call.

The gate (benchmarks/gate.py) starts one pytest process per tree, both alive at once, and loads this
plugin into each (`-p benchmarks.baton`). A process runs only while it holds the baton, which the gate
hands to each side in turn over a Unix socket: a process takes it before each test (so session set-up,
migrations and seeding never overlap the other side's measurements) and passes it on after every
measured pair of `harness.interleaved_ratio` and after each test. The reference tree's call and the
candidate's call of the same benchmark thus run a millisecond apart, under the same neighbours, and never
at the same time: what a loaded machine does to one it does to the other.

Outside the gate (no TRADEDESK_BENCH_BATON) `pass_turn()` does nothing.

A plain Unix socket with one text line per message (not multiprocessing.connection): the gate needs
timeouts on accept and receive to notice a process that died, which Listener.accept() does not offer.
"""

from __future__ import annotations

import os
import socket

import pytest

ENV = "TRADEDESK_BENCH_BATON"  # "<unix socket path>|<side name>", set by the gate


class _Baton:
    def __init__(self, address: str, side: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(address)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        self.holding = False
        self.sock.sendall(f"hello {side}\n".encode())

    def take(self) -> None:
        if not self.holding:
            line = self.reader.readline().strip()
            if line != "go":
                raise RuntimeError(f"latency gate baton: expected 'go', got {line!r}")
            self.holding = True

    def give(self) -> None:
        if self.holding:
            self.holding = False
            self.sock.sendall(b"yield\n")


_baton: _Baton | None = None


def pass_turn() -> None:
    """Let the other side run one turn, then continue (a no-op outside the gate)."""
    if _baton is not None:
        _baton.give()
        _baton.take()


def pytest_configure(config: pytest.Config) -> None:
    global _baton
    address, _, side = os.environ[ENV].partition("|")
    _baton = _Baton(address, side)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    assert _baton is not None
    _baton.take()
    try:
        yield
    finally:
        _baton.give()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Writing the results and exiting run in a turn of their own too; the gate sees the socket close.
    if _baton is not None:
        _baton.take()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _baton is not None:
        _baton.sock.close()
