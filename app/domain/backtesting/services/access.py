"""Who sees which backtest and sweep (the filter is part of every statement), and the queue check."""

from __future__ import annotations

from saq import Queue
from sqlalchemy import ColumnElement, true

from app.domain.backtesting.models import Backtest, Sweep
from app.domain.identity.schemas import Principal
from app.lib.errors import QueueUnavailable


def visible(principal: Principal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    return Backtest.owner_id == principal.user_id


def sweep_visible(principal: Principal) -> ColumnElement[bool]:
    if principal.is_admin:
        return true()
    return Sweep.owner_id == principal.user_id


def require_queue(queue: Queue | None) -> Queue:
    if queue is None:
        raise QueueUnavailable("No job queue is configured")
    return queue
