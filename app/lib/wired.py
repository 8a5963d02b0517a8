"""Whether this process ran the composition root (`app.server.wiring.wire()`).

Price hooks and job functions are registered by `wire()` alone, never as a side effect of importing a
module. Code that depends on them (the price path, the job registry, a worker) calls `require_wired()`
first, so a process whose entry point forgot `wire()` fails at once with a message that says so,
instead of storing prices that match no order or answering "unknown job".
"""

from __future__ import annotations


class NotWired(RuntimeError):
    """A registry was used before `wire()` filled it."""


class _State:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


_STATE = _State()


def mark_wired() -> None:
    _STATE.done = True


def is_wired() -> bool:
    return _STATE.done


def require_wired(what: str) -> None:
    if not _STATE.done:
        raise NotWired(
            f"{what} used before wire(): the process entry point must call app.server.wiring.wire() "
            "(create_app and `tradedesk worker` do)"
        )
