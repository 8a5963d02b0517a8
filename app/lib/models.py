"""Imports every domain's tables so `Base.metadata` is complete (Alembic and schema tests use it)."""

from app.domain.accounts import models as accounts  # noqa: F401
from app.domain.audit import models as audit  # noqa: F401
from app.domain.backtesting import models as backtesting  # noqa: F401
from app.domain.identity import models as identity  # noqa: F401
from app.domain.jobs import models as jobs  # noqa: F401
from app.domain.markets import models as markets  # noqa: F401
from app.domain.risk import models as risk  # noqa: F401
from app.domain.trading import models as trading  # noqa: F401
from app.lib.db import Base

metadata = Base.metadata
