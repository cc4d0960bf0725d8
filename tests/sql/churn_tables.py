"""The churn data of the SQL loop tests: days (the last one drifted), rows per day, the connection id."""

from __future__ import annotations

import datetime as dt

PG_CONN_ID = "mlops_sql_pg"
CHURN_DAYS = [(dt.date(2024, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(10)]
CHURN_ROWS = 800
