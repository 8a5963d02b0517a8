"""Exchanges, instruments, candles and last prices.

One module per idea, re-exported here (callers import from this package): `catalogue` (exchanges and
instruments), `candle_loads`, `candle_uploads` (asynchronous loads), `prices`. `PricePoint` (a feed's
price, feed_paths.py) is re-exported for the callers of `feed_prices`.
"""

from __future__ import annotations

from app.domain.markets.feed_paths import PricePoint
from app.domain.markets.services.candle_loads import (
    CANDLES_SQL,
    candle_error,
    load_candles,
    load_candles_csv,
    load_candles_json,
    one_batch,
    query_candles,
    set_price_from_candle,
)
from app.domain.markets.services.candle_uploads import (
    UPLOAD_CHUNK,
    candle_load_job_key,
    candle_load_status,
    park_candle_upload,
)
from app.domain.markets.services.catalogue import (
    EXCHANGE_COLS,
    INSTRUMENT_COLS,
    create_exchange,
    create_instrument,
    get_exchange,
    get_instrument,
    list_exchanges,
    list_instruments,
    update_instrument,
    upsert_exchange,
    upsert_instrument,
)
from app.domain.markets.services.prices import (
    FeedStep,
    feed_mixed_prices,
    feed_prices,
    get_price,
    publish_committed_prices,
    set_price,
    store_price,
)

__all__ = [
    "PricePoint",
    "CANDLES_SQL",
    "EXCHANGE_COLS",
    "FeedStep",
    "INSTRUMENT_COLS",
    "UPLOAD_CHUNK",
    "candle_error",
    "candle_load_job_key",
    "candle_load_status",
    "create_exchange",
    "create_instrument",
    "feed_mixed_prices",
    "feed_prices",
    "get_exchange",
    "get_instrument",
    "get_price",
    "list_exchanges",
    "list_instruments",
    "load_candles",
    "load_candles_csv",
    "load_candles_json",
    "one_batch",
    "park_candle_upload",
    "publish_committed_prices",
    "query_candles",
    "set_price",
    "set_price_from_candle",
    "store_price",
    "update_instrument",
    "upsert_exchange",
    "upsert_instrument",
]
