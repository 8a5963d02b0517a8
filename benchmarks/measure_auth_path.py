"""The authenticated hot path with and without the brute-force/audit hooks, side by side in one run.

    python -m benchmarks.measure_auth_path [--requests 300] [--rounds 15]

AuthMiddleware.handle gained, for a valid key, one ContextVar.set (the audit trail's request context) and
an `is admin and a write` test; failures now count per IP and write an audit row. Two apps run on one
event loop against the same scratch database (td_meas_*): the current one, and one whose
AuthMiddleware.handle is the previous body (kept below verbatim). Rounds alternate between them;
reported: median microseconds per GET /api/v1/auth/whoami (valid, cached key: auth + rate limit, no
database) and per GET /api/v1/users/me (one row read), and their ratio. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import replace

import msgspec

from app.lib.db import async_url
from app.lib.settings import Settings
from benchmarks.conftest import REDIS_URL, _admin, _url, drop_redis_keys
from benchmarks.harness import AsgiDriver


async def previous_handle(self, scope, receive, send, next_app) -> None:  # noqa: ANN001
    """AuthMiddleware.handle as it was before the audit trail and brute-force protection."""
    from app.domain.identity.middleware import _credential, is_anonymous_path
    from app.domain.identity.services import authenticate
    from app.lib.errors import ApiError

    key = _credential(scope)
    if is_anonymous_path(scope["path"]):
        scope["user"] = None
        await next_app(scope, receive, send)
        return
    if key is None:
        raise ApiError(401, "Missing API key", headers={"WWW-Authenticate": "Bearer"})
    principal = await authenticate(scope["app"].state.engine, key)
    if principal is None:
        raise ApiError(401, "Invalid, expired or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    scope["user"] = principal
    scope["auth"] = principal.key_id
    await next_app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from app.domain.identity.middleware import AuthMiddleware
    from app.lib.migrate import upgrade
    from app.server.app import create_app

    db = f"td_meas_{uuid.uuid4().hex[:8]}"
    run = db.rsplit("_", 1)[1]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_admin(f'CREATE DATABASE "{db}"'))
    drivers: dict[str, AsgiDriver] = {}
    try:
        upgrade(_url(db))
        settings = replace(
            Settings(),
            env="bench",
            database_url=async_url(_url(db)),
            redis_url=REDIS_URL,
            queue_name=f"tdmeas-{run}",
            redis_prefix=f"tdmeas-{run}",
            admin_api_key=f"td_meas_admin_{run}_0123456789abcdefghij",
            workers_in_process=False,
            log_level="WARNING",
            access_log=False,
            rate_limit_read=10**9,
            rate_limit_write=10**9,
            rate_limit_orders=10**9,
            rate_limit_anonymous=10**9,
            db_pool_size=4,
            db_max_overflow=2,
            db_order_pool_size=2,
        )
        current = AuthMiddleware.handle
        drivers["current"] = AsgiDriver(create_app(settings), loop)
        AuthMiddleware.handle = previous_handle  # type: ignore[method-assign]  # bound when the app is built
        try:
            drivers["previous"] = AsgiDriver(create_app(settings), loop)
        finally:
            AuthMiddleware.handle = current  # type: ignore[method-assign]
        for driver in drivers.values():
            driver.start()
        admin = {"authorization": f"Bearer {settings.admin_api_key}"}
        _, body = drivers["current"].call(
            "POST", "/api/v1/users", json={"email": f"m-{run}@e.co"}, headers=admin
        )
        trader = {"authorization": "Bearer " + msgspec.json.decode(body)["api_key"]}

        results: dict[tuple[str, str], list[float]] = {}
        for path in ("/api/v1/auth/whoami", "/api/v1/users/me"):
            for driver in drivers.values():  # warm-up
                for _ in range(100):
                    assert driver.call("GET", path, headers=trader)[0] == 200

            async def batch(driver: AsgiDriver, path: str = path) -> float:
                started = time.perf_counter()
                for _ in range(args.requests):
                    await driver.request("GET", path, headers=trader)
                return (time.perf_counter() - started) / args.requests * 1e6

            for _ in range(args.rounds):
                for name, driver in drivers.items():
                    results.setdefault((path, name), []).append(loop.run_until_complete(batch(driver)))
        for path in ("/api/v1/auth/whoami", "/api/v1/users/me"):
            now, before = (statistics.median(results[(path, n)]) for n in ("current", "previous"))
            print(f"{path:24} current {now:7.1f} us  previous {before:7.1f} us  ratio {now / before:.3f}")
    finally:
        for driver in drivers.values():
            driver.stop()
        loop.run_until_complete(drop_redis_keys(f"tdmeas-{run}"))
        loop.run_until_complete(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
