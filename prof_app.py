import sys
sys.path.insert(0, "/tmp/prof")
import toggles  # noqa
import os
if "extra_rt" in toggles.T:
    from app.domain.trading import placement
    _pl = placement.place_order
    async def place_order(conn, *a, **k):
        await conn.fetchval("SELECT 1")
        return await _pl(conn, *a, **k)
    placement.place_order = place_order
from app.server.asgi import app  # noqa
