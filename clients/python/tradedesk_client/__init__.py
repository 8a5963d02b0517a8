"""Python client for the Tradedesk trading API.

from tradedesk_client import Client
with Client("http://127.0.0.1:8000", api_key=KEY) as td:
    order = td.orders.place(account_id, "DEMO", "buy", "market", quantity=10)
"""

from tradedesk_client._transport import RetryPolicy
from tradedesk_client.client import AsyncClient, Client
from tradedesk_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RiskLimitBreached,
    ServerError,
    ServiceUnavailable,
    TradedeskError,
    TransportError,
    Unauthorized,
    Unprocessable,
)
from tradedesk_client.models import TradeUpdate
from tradedesk_client.stream import Stream, StreamError

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "RiskLimitBreached",
    "ServerError",
    "ServiceUnavailable",
    "Stream",
    "StreamError",
    "TradeUpdate",
    "TradedeskError",
    "TransportError",
    "Unauthorized",
    "Unprocessable",
]
