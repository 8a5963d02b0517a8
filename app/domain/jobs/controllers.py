from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody, Parameter

from app.domain.identity.guards import requires_admin
from app.domain.jobs import services
from app.domain.jobs.schemas import (
    JobAccepted,
    JobCreate,
    JobOut,
    JobsHealth,
    QueueStats,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    SchedulePatch,
)
from app.lib.db import DbConn, provide_db
from app.lib.middleware import request_id_of

JobKey = Annotated[str, Parameter(max_length=200)]
ScheduleName = Annotated[str, Parameter(max_length=100)]


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]
    guards = [requires_admin]

    @post("/", status_code=202, summary="Enqueue a registered job function (admin)")
    async def submit(self, request: Request, data: JSONBody[JobCreate]) -> JobAccepted:
        queue = services.require_queue(request.app.state.queue)
        job = await services.submit_job(queue, data, request.user, request_id_of(request.scope))
        return JobAccepted(key=job.key, status=job.status.value)

    @get("/", summary="Queue statistics as SAQ reports them")
    async def stats(self, request: Request) -> QueueStats:
        return await services.queue_stats(services.require_queue(request.app.state.queue))

    @get("/health", summary="Workers alive, queue depth, oldest queued job age, failures in the last hour")
    async def health(self, request: Request) -> JobsHealth:
        queue = services.require_queue(request.app.state.queue)
        return await services.jobs_health(queue, request.app.state.kv)

    @get("/{key:str}", summary="One job: status, progress, result, error, attempts, timestamps")
    async def get_job(self, request: Request, key: FromPath[JobKey]) -> JobOut:
        queue = services.require_queue(request.app.state.queue)
        return await services.describe(await services.get_job(queue, key), request.app.state.kv)

    @delete("/{key:str}", status_code=202, summary="Abort a queued or running job (409 if already finished)")
    async def abort_job(self, request: Request, key: FromPath[JobKey]) -> JobOut:
        queue, kv = services.require_queue(request.app.state.queue), request.app.state.kv
        return await services.describe(await services.abort_job(queue, kv, key, request.user), kv)


class ScheduleController(Controller):
    path = "/api/v1/jobs/schedules"
    tags = ["jobs"]
    guards = [requires_admin]
    dependencies = {"db": Provide(provide_db)}

    @get("/", summary="Persistent cron schedules")
    async def list_schedules(self, db: DbConn) -> ScheduleList:
        return ScheduleList(items=await services.list_schedules(db))

    @post("/", status_code=201, summary="Create a schedule (cron, timezone and kwargs are validated)")
    async def create_schedule(self, db: DbConn, data: JSONBody[ScheduleCreate]) -> ScheduleOut:
        return await services.create_schedule(db, data)

    @get("/{name:str}", summary="One schedule")
    async def get_schedule(self, db: DbConn, name: FromPath[ScheduleName]) -> ScheduleOut:
        return await services.get_schedule(db, name)

    @patch("/{name:str}", summary="Change, pause or resume a schedule; next_run_at is recomputed")
    async def update_schedule(
        self, db: DbConn, name: FromPath[ScheduleName], data: JSONBody[SchedulePatch]
    ) -> ScheduleOut:
        return await services.update_schedule(db, name, data)

    @delete("/{name:str}", status_code=204, summary="Delete a schedule")
    async def delete_schedule(self, db: DbConn, name: FromPath[ScheduleName]) -> None:
        await services.delete_schedule(db, name)
