"""Shared wait logic of the airflow-mlops sensors whose ``poke`` returns a ``PokeReturnValue``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


class PokeOnceThenDefer:
    """Mixin for a ``BaseSensorOperator``: with ``deferrable`` it pokes once, returns the XCom when
    already done, else hands the wait to :meth:`trigger` (resumed in ``execute_complete``)."""

    def trigger(self, context: Context) -> BaseTrigger:
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        if not self.deferrable:  # type: ignore[attr-defined]
            return super().execute(context)  # type: ignore[misc]
        first = self.poke(context)  # type: ignore[attr-defined]
        if first.is_done:
            return first.xcom_value
        self.defer(trigger=self.trigger(context), method_name="execute_complete",  # type: ignore[attr-defined]
                   timeout=dt.timedelta(seconds=float(self.timeout)))  # type: ignore[attr-defined]
