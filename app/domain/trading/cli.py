from __future__ import annotations

import asyncio
import sys
import uuid

import click


@click.command()
@click.option("--account", "account_id", type=click.UUID, default=None, help="One account id (default: all)")
def reconcile(account_id: uuid.UUID | None) -> None:
    """Replay fills and compare with stored cash and positions; exit 1 on any drift, 2 on bad input (an
    account id that is not a UUID, or no such account)."""
    from sqlalchemy.exc import NoResultFound

    from app.domain.trading.reconcile import reconcile_account, reconcile_all
    from app.lib.db import create_engine
    from app.lib.embedded import apply_embedded_defaults
    from app.lib.settings import get_settings

    apply_embedded_defaults()

    async def run():
        engine = create_engine(get_settings())
        try:
            async with engine.connect() as conn:
                if account_id:
                    try:
                        d = await reconcile_account(conn, account_id)
                    except NoResultFound:
                        raise click.BadParameter(f"no account {account_id}", param_hint="--account") from None
                    return [d] if not d.ok else []
                return await reconcile_all(conn)
        finally:
            await engine.dispose()

    drifts = asyncio.run(run())
    for d in drifts:
        click.echo(f"DRIFT {d.account_id}: " + "; ".join(d.problems))
    click.echo(f"{len(drifts)} account(s) with drift")
    sys.exit(1 if drifts else 0)


COMMANDS = [reconcile]
