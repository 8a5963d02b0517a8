"""Placeholder replaced by the persistent scheduler (issue 8)."""

from __future__ import annotations

import asyncio
from typing import Any


def start_scheduler(ctx: dict[str, Any]) -> asyncio.Task | None:
    return None
