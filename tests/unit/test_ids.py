"""Buffered random ids (app/lib/ids.py): unique, never shared with a forked child, and time-ordered ids."""

from __future__ import annotations

import os
import uuid

from app.lib import ids


def test_request_ids_are_unique_across_buffer_refills():
    seen = {ids.new_request_id() for _ in range(5000)}  # spans several 4 KiB refills
    assert len(seen) == 5000
    assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in seen)


def test_a_forked_child_does_not_repeat_the_parents_ids():
    ids.random_bytes16()  # the parent has a partly used buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next random bytes it would hand out
        os.write(write, ids.random_bytes16())
        os._exit(0)
    os.close(write)
    child_next = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    parent_next = ids.random_bytes16()
    assert len(child_next) == 16 and child_next != parent_next


def test_time_ordered_ids_are_version_7_sorted_by_creation_and_unique():
    import time

    before_ms = time.time_ns() // 1_000_000
    made = []
    for _ in range(3):
        made.extend(ids.new_time_ordered_uuid() for _ in range(2000))
        time.sleep(0.002)  # across several milliseconds
    after_ms = time.time_ns() // 1_000_000
    assert len(set(made)) == len(made)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in made)
    stamps = [u.int >> 80 for u in made]  # the leading 48 bits: Unix milliseconds
    assert before_ms <= stamps[0] and stamps[-1] <= after_ms
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    # Ids of different milliseconds sort (as PostgreSQL compares uuids: bytewise) by creation time.
    firsts = [made[0], made[2000], made[4000]]
    assert sorted(firsts, key=lambda u: u.bytes) == firsts
    # 74 random bits below the timestamp: ids of one millisecond differ there.
    same_ms = [u for u in made if u.int >> 80 == stamps[0]]
    assert len({u.int & ((1 << 74) - 1) for u in same_ms}) == len(same_ms)
