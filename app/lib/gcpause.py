"""Pausing the cyclic garbage collector around a burst of short-lived objects.

A batch risk check (1,000 accounts: ~25,000 rows, Decimals, records and small dicts, all freed by reference
counting when it ends) allocates enough tracked objects to run some 60 young-generation collections, and
in one check out of two a full collection, which walks every object of the process: 50-130 ms of CPU in a
check that otherwise takes ~50 (docs/BENCHMARKS.md, "Risk at desk scale"). With the collector paused for
the burst, the temporaries never reach an older generation and are freed as they always are; nothing the
burst builds is cyclic garbage worth collecting early.

Pauses nest and overlap across tasks (a depth count: the collector resumes when the last pause ends, and
only if it was enabled before the first). Other tasks that run meanwhile allocate without collections for
as long, so a pause is for work of bounded size and duration (a batch of at most 1,000 accounts, about a
tenth of a second), not for a whole sweep.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_resume = False


@contextmanager
def paused_gc() -> Iterator[None]:
    global _depth, _resume
    if _depth == 0:
        _resume = gc.isenabled()
        gc.disable()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _resume:
            gc.enable()
