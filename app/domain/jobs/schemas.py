from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

FunctionName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ScheduleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
Cron = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
JobStatus = Literal["new", "queued", "active", "aborting", "aborted", "failed", "complete"]


class JobCreate(msgspec.Struct, forbid_unknown_fields=True):
    function: FunctionName
    kwargs: dict[str, Any] = {}
    timeout: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None
    retries: Annotated[int, msgspec.Meta(ge=1, le=25)] | None = None
    scheduled_at: AwareDatetime | None = None


class JobAccepted(msgspec.Struct):
    key: str
    status: JobStatus


class JobOut(msgspec.Struct):
    key: str
    function: str
    status: JobStatus
    progress: float
    attempts: int
    retries: int
    timeout: int
    kwargs: dict[str, Any]
    result: Any
    error: str | None
    meta: dict[str, Any]
    queued_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None


class WorkerOut(msgspec.Struct):
    id: str
    queue: str | None
    uptime_seconds: float | None
    complete: int
    failed: int
    retried: int
    aborted: int
    metadata: dict[str, Any] | None = None


class QueueStats(msgspec.Struct):
    """Counts as SAQ reports them: queue lengths now, and finished-job totals since each live worker
    started (summed over the workers seen alive)."""

    name: str
    queued: int
    active: int
    scheduled: int
    complete: int
    failed: int
    retried: int
    aborted: int
    workers: int
    worker_details: list[WorkerOut]


class JobsHealth(msgspec.Struct):
    status: Literal["ok", "degraded", "down"]
    workers_alive: int
    queue_depth: int
    active: int
    oldest_queued_age_seconds: float | None
    failures_last_hour: int | None
    detail: str | None = None


class ScheduleCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: ScheduleName
    function: FunctionName
    cron: Cron
    kwargs: dict[str, Any] = {}
    enabled: bool = True
    timezone: TimezoneName = "UTC"


class SchedulePatch(msgspec.Struct, forbid_unknown_fields=True):
    function: FunctionName | None = None
    cron: Cron | None = None
    kwargs: dict[str, Any] | None = None
    enabled: bool | None = None
    timezone: TimezoneName | None = None


class ScheduleOut(msgspec.Struct):
    name: str
    function: str
    cron: str
    kwargs: dict[str, Any]
    enabled: bool
    timezone: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleList(msgspec.Struct):
    items: list[ScheduleOut]
