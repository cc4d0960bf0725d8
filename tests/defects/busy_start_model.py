"""Test-only trusted type: a regressor that scores slowly while the machine is "busy".

``BusyStartRegressor.predict`` costs ``ROW_SECONDS`` per row, plus ``BUSY_SECONDS`` per call during the
first ``BUSY_WINDOW`` seconds after its first call in the process: what a smoke-test child sees while
its parent is still computing permutation importance on the same cores, then finishes.
"""

from __future__ import annotations

import time

from sklearn.linear_model import LinearRegression

TRUSTED = ("busy_start_model.BusyStartRegressor",)
ROW_SECONDS = 2e-6
BUSY_SECONDS = 0.06
BUSY_WINDOW = 0.3
_FIRST_CALL: list[float] = []


def reset() -> None:
    _FIRST_CALL.clear()


class BusyStartRegressor(LinearRegression):
    def predict(self, X):
        now = time.perf_counter()
        if not _FIRST_CALL:
            _FIRST_CALL.append(now)
        if now - _FIRST_CALL[0] < BUSY_WINDOW:
            time.sleep(BUSY_SECONDS)
        time.sleep(len(X) * ROW_SECONDS)
        return super().predict(X)
