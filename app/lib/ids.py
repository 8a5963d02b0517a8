"""Random identifiers for hot paths, without a system call each.

`uuid.uuid4()` reads 16 bytes from the kernel per call (os.urandom); order placement makes three of them
(request id, order id, fill id), and under load each getrandom call cost about as much as the rest of
building the id. Here the same kernel randomness is read 4 KiB at a time and sliced. The buffer is
discarded in a forked child (granian forks its workers), so no two processes hand out the same ids.
"""

from __future__ import annotations

import os
import uuid

_CHUNK = 4096
_buffer = b""
_offset = _CHUNK


def _reset_after_fork() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", _CHUNK


os.register_at_fork(after_in_child=_reset_after_fork)


def random_bytes16() -> bytes:
    global _buffer, _offset
    if _offset + 16 > len(_buffer):
        _buffer, _offset = os.urandom(_CHUNK), 0
    out = _buffer[_offset : _offset + 16]
    _offset += 16
    return out


def new_uuid() -> uuid.UUID:
    """A version-4 UUID (122 random bits from os.urandom), like uuid.uuid4()."""
    return uuid.UUID(bytes=random_bytes16(), version=4)


def new_request_id() -> str:
    """32 hex characters of fresh randomness, like uuid4().hex."""
    return random_bytes16().hex()
