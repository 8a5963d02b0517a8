"""The collector pause of batch risk checks: nested and overlapping pauses, and the state it restores."""

from __future__ import annotations

import asyncio
import gc

from app.lib.gcpause import paused_gc


def test_pauses_nest_and_restore_an_enabled_collector():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_tasks_resume_the_collector_when_the_last_one_ends():
    async def slow_check(release: asyncio.Event) -> None:
        with paused_gc():
            await release.wait()
            assert not gc.isenabled()

    async def main() -> None:
        release = asyncio.Event()
        slow = asyncio.create_task(slow_check(release))
        await asyncio.sleep(0)  # the slow check holds its pause
        with paused_gc():
            await asyncio.sleep(0)
        assert not gc.isenabled()  # this check ended, the slow one still runs
        release.set()
        await slow
        assert gc.isenabled()

    asyncio.run(main())


def test_an_error_inside_a_pause_resumes_the_collector():
    try:
        with paused_gc():
            raise ValueError
    except ValueError:
        pass
    assert gc.isenabled()
