"""`tradedesk check`: settings sane, DB reachable and migrated, Redis reachable, workers alive."""

from __future__ import annotations

from app.lib.settings import Settings


async def run_checks(settings: Settings, *, require_workers: bool = True) -> tuple[bool, list[str]]:
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

    for problem in settings.problems():
        report(False, f"settings: {problem}")
    if not settings.problems():
        report(True, "settings: production-shaped")

    if settings.database_url:
        engine = create_engine(settings)
        try:
            await check_database(engine)
            report(True, "database: reachable and at migration head")
        except Exception as exc:
            report(False, f"database: {exc}")
        finally:
            await engine.dispose()

    if settings.redis_url:
        kv = make_kv(settings)
        try:
            await kv.ping()
            report(True, "redis: reachable")
        except Exception as exc:
            report(False, f"redis: {exc}")
        finally:
            await kv.close()

    if settings.effective_queue_url:
        queue = make_queue(settings)
        try:
            await queue.connect()
            workers, queued = await queue_workers(queue)
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
