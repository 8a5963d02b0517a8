"""`tradedesk check`: settings sane, DB reachable and migrated, Redis reachable, workers alive."""

from __future__ import annotations

from app.lib.settings import Settings


async def run_checks(
    settings: Settings, *, require_workers: bool = True, embedded: bool = False
) -> tuple[bool, list[str]]:
    """`embedded`: the CLI started (or attached to) the embedded PostgreSQL; its URL is in `settings`.
    Running without DATABASE_URL/REDIS_URL is then the chosen development setup, reported, not failed."""
    from app.domain.system.services import check_database, queue_workers
    from app.lib.db import create_engine
    from app.lib.jobs import make_queue
    from app.lib.state import make_kv

    lines: list[str] = []
    ok = True

    def report(passed: bool, what: str) -> None:
        nonlocal ok
        ok = ok and passed
        lines.append(f"[{'ok' if passed else 'FAIL'}] {what}")

    problems = settings.problems(embedded=embedded)
    for problem in problems:
        report(False, f"settings: {problem}")
    if embedded:
        pgdata = settings.data_dir.resolve() / "pg"
        lines.append(
            f"[info] settings: embedded mode (development): PostgreSQL in {pgdata}, job queue in it, "
            "cache and rate limits in memory; set DATABASE_URL and REDIS_URL for production"
        )
    elif not problems:
        report(True, "settings: production-shaped")

    if settings.database_url:
        engine = create_engine(settings)
        try:
            await check_database(engine)
            report(True, "database: reachable and at migration head")
            for passed, line in await check_schedules(engine):
                report(passed, line)
        except Exception as exc:
            report(False, f"database: {exc}")
        finally:
            await engine.dispose()

    if settings.redis_url:
        kv = make_kv(settings)
        try:
            await kv.ping()
            report(True, "redis: reachable")
            from app.lib.cache import Cache

            probe = Cache(kv, 5)
            payload = await probe.get_json("check", "probe", _probe_value, ttl=5)
            report(payload == b'{"ok":true}', "cache: read-through round trip works")
        except Exception as exc:
            report(False, f"redis/cache: {exc}")
        finally:
            await kv.close()

    if settings.effective_queue_url:
        queue = make_queue(settings)
        try:
            await queue.connect()
            workers, queued = await queue_workers(queue)
            report(True, "queue: reachable")
            if require_workers:
                report(workers > 0, f"workers: {workers} alive, {queued} job(s) queued")
            else:
                lines.append(f"[info] workers: {workers} alive, {queued} job(s) queued")
        except Exception as exc:
            report(False, f"queue: {exc}")
        finally:
            try:
                await queue.disconnect()
            except Exception:
                pass
    return ok, lines


async def _probe_value() -> dict[str, bool]:
    return {"ok": True}


async def check_schedules(engine) -> list[tuple[bool, str]]:
    """Every enabled schedule names a registered job and is not overdue by more than a few minutes
    (an overdue schedule means no worker is running its scheduler loop)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from app.domain.jobs.models import JobSchedule
    from app.lib.jobs import registry as job_registry

    registry = job_registry()
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(JobSchedule.name, JobSchedule.function, JobSchedule.next_run_at).where(JobSchedule.enabled)
        )).all()
    now = datetime.now(UTC)
    out: list[tuple[bool, str]] = []
    unknown = [r.name for r in rows if r.function not in registry]
    overdue = [r.name for r in rows if r.next_run_at is not None and now - r.next_run_at > timedelta(minutes=5)]
    out.append((not unknown, f"schedules: {len(rows)} enabled" + (f"; unknown functions: {unknown}" if unknown else "")))
    out.append((not overdue, "schedules: none overdue" if not overdue else f"schedules overdue (no scheduler running?): {overdue}"))
    return out
