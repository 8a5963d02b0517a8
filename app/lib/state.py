"""Process-wide resources (engine, KV, queue, in-process worker), opened and closed with the app.

A worker runs, besides its jobs, the services the composition root registers with `on_worker_start`
(app/server/wiring.py: the stream channels of a worker process, the schedule loop of every worker), so
this module names no domain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from saq import Queue, Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.cache import Cache
from app.lib.db import create_engine, create_order_pool
from app.lib.jobs import make_queue, make_worker
from app.lib.kv import KV, MemoryKV, RedisKV, make_redis
from app.lib.log import get_logger
from app.lib.settings import Settings

log = get_logger("app.state")

ORDER_POOL_CLOSE_SECONDS = 10.0


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    kv: KV
    queue: Queue | None
    order_pool: asyncpg.Pool | None = None
    cache: Cache | None = None
    worker: Worker | None = None
    worker_task: asyncio.Task | None = None
    background: list[asyncio.Task] = field(default_factory=list)

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        for task in [self.worker_task, *self.background]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.queue is not None:
            with contextlib.suppress(Exception):
                await self.queue.disconnect()
        await self.kv.close()
        if self.order_pool is not None:
            # close() waits for checked-out connections; a request stuck in PostgreSQL must not hold up
            # shutdown forever (granian has already stopped handing out requests by now). Cancelled by
            # the timeout, asyncpg terminates the pool's connections itself.
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self.order_pool.close(), timeout=ORDER_POOL_CLOSE_SECONDS)
        await self.engine.dispose()


def make_kv(settings: Settings) -> KV:
    namespace = f"{settings.redis_prefix}:app"
    if settings.redis_url:
        return RedisKV(make_redis(settings.redis_url), namespace)
    return MemoryKV(namespace)


# Started with every worker, in registration order, after its context is set up, and stopped in reverse
# order before the context closes: (service, own_process_only). `own_process_only`: not for the in-process
# worker of embedded mode, which shares the API's (the stream channels).
WorkerService = Callable[[dict[str, Any]], AbstractAsyncContextManager[Any]]
_WORKER_SERVICES: list[tuple[WorkerService, bool]] = []


def on_worker_start(service: WorkerService, *, own_process_only: bool = False) -> None:
    if all(existing is not service for existing, _ in _WORKER_SERVICES):
        _WORKER_SERVICES.append((service, own_process_only))


def worker_services() -> list[tuple[WorkerService, bool]]:
    return list(_WORKER_SERVICES)


async def worker_context_startup(ctx: dict[str, Any], settings: Settings) -> None:
    ctx["settings"] = settings
    ctx["engine"] = create_engine(settings)
    ctx["kv"] = make_kv(settings)
    ctx["cache"] = Cache(ctx["kv"], settings.cache_ttl_seconds)


async def worker_context_shutdown(ctx: dict[str, Any]) -> None:
    if "kv" in ctx:
        await ctx["kv"].close()
    if "engine" in ctx:
        await ctx["engine"].dispose()


async def open_resources(settings: Settings) -> Resources:
    engine = create_engine(settings)
    kv = make_kv(settings)
    queue = None
    if settings.effective_queue_url:
        queue = make_queue(settings)
        try:
            await queue.connect()
        except Exception as exc:  # the API still serves reads when the queue is down; /ready reports it
            log.warning("queue_connect_failed", error=repr(exc)[:300])
    res = Resources(settings=settings, engine=engine, kv=kv, queue=queue, cache=Cache(kv, settings.cache_ttl_seconds),
                    order_pool=await create_order_pool(settings))
    if settings.workers_in_process and queue is not None:
        res.worker = build_worker(queue, settings, shared=res)
        res.worker_task = asyncio.create_task(res.worker.start(), name="saq-worker")
    return res


def build_worker(queue: Queue, settings: Settings, shared: Resources | None = None, concurrency: int | None = None) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        if shared is not None:  # in-process: reuse the API's pools
            ctx.update(settings=settings, engine=shared.engine, kv=shared.kv, cache=shared.cache, queue=queue)
        else:
            await worker_context_startup(ctx, settings)
            ctx["queue"] = queue
        services = ctx["worker_services"] = AsyncExitStack()
        for service, own_process_only in _WORKER_SERVICES:
            if not (own_process_only and shared is not None):
                await services.enter_async_context(service(ctx))

    async def shutdown(ctx: dict[str, Any]) -> None:
        services = ctx.pop("worker_services", None)
        if services is not None:
            with contextlib.suppress(Exception):
                await services.aclose()
        if shared is None:
            await worker_context_shutdown(ctx)

    worker = make_worker(queue, settings, startup=startup, shutdown=shutdown, concurrency=concurrency)
    if shared is not None:
        # In-process: the API server owns signals; SAQ must not install its own handlers.
        worker.SIGNALS = []
    return worker
