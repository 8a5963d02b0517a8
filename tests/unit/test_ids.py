"""Buffered random ids (app/lib/ids.py): unique, version 4, and never shared with a forked child."""

from __future__ import annotations

import os
import uuid

from app.lib import ids


def test_ids_are_unique_version_4_uuids():
    seen = {ids.new_uuid() for _ in range(5000)}  # spans several 4 KiB refills
    assert len(seen) == 5000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in seen)
    rid = ids.new_request_id()
    assert len(rid) == 32 and int(rid, 16) >= 0 and rid != ids.new_request_id()


def test_a_forked_child_does_not_repeat_the_parents_ids():
    ids.new_uuid()  # the parent has a partly used buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next id it would hand out
        os.write(write, ids.new_uuid().bytes)
        os._exit(0)
    os.close(write)
    child_id = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.waitpid(pid, 0)
    parent_next = ids.new_uuid()
    assert child_id != parent_next
