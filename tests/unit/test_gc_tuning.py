"""The API process freezes what start-up allocated (app/lib/gc_tuning.py)."""

from __future__ import annotations

import gc

from app.lib.gc_tuning import GEN0_THRESHOLD, freeze_startup_objects


def test_gc_freeze_moves_startup_objects_out_of_collection():
    before = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
