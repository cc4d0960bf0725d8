"""The train/holdout split and the CV folds of :func:`~airflow_mlops.training.trainer.train_model`
(``training.split``): a random (stratified) holdout with shuffled folds, or, for time-ordered data, the last
``holdout_days`` of the window as an out-of-time holdout with forward-chaining folds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlops.training.errors import TrainingError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ForwardChainingSplit", "random_split", "time_split"]


def random_split(y: np.ndarray, test_size: float, folds: int, classification: bool,
                  seed: int) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any], dict[str, Any]]:
    """``training.split: random``: a random (stratified for classification) holdout of ``test_size`` and
    shuffled (stratified) K folds on the rest."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    try:
        train_pos, hold_pos = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed,
                                               shuffle=True, stratify=y if classification else None)
    except ValueError as exc:
        raise TrainingError(f"cannot split the data (test_size={test_size}): {exc}") from exc
    train_pos, hold_pos = np.sort(train_pos), np.sort(hold_pos)
    if len(train_pos) < folds:
        raise TrainingError(f"the train part has {len(train_pos)} rows, fewer than cv_folds={folds}")
    splitter = (StratifiedKFold if classification else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    split = {"method": "random", "test_size": test_size, "stratified": classification, "seed": seed,
             "n_train": int(len(train_pos)), "n_holdout": int(len(hold_pos))}
    cv = {"kind": type(splitter).__name__, "folds": folds, "shuffle": True, "seed": seed}
    return train_pos, hold_pos, splitter, split, cv


class ForwardChainingSplit:
    """Forward-chaining CV folds over rows in time order (scikit-learn's ``TimeSeriesSplit`` on the rows sorted
    by date): every fold trains on earlier rows and validates on the next block, never on the past. Rows of one
    day keep their order; a fold boundary may fall inside a day."""

    def __init__(self, dates: np.ndarray, n_splits: int) -> None:
        import numpy as np

        self.order = np.argsort(np.asarray(dates, dtype=str), kind="stable")
        self.n_splits = n_splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Any:
        from sklearn.model_selection import TimeSeriesSplit

        for train, test in TimeSeriesSplit(n_splits=self.n_splits).split(self.order):
            yield self.order[train], self.order[test]


def time_split(dates: np.ndarray, holdout_days: int,
                folds: int) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any], dict[str, Any]]:
    """``training.split: time``: the rows of the last ``holdout_days`` dates of the window are the holdout (an
    out-of-time holdout the promotion gate scores champion and candidate on), forward-chaining folds on the
    earlier rows."""
    import numpy as np

    days = sorted({str(d) for d in dates})
    if len(days) <= holdout_days:
        raise TrainingError(f"training.split: time holds out the last {holdout_days} day(s), but the training "
                            f"window has data for {len(days)} day(s) ({', '.join(days)}); widen "
                            "data.training_window_days or lower training.holdout_days")
    hold_days = days[-holdout_days:]
    is_hold = np.isin(np.asarray(dates, dtype=str), hold_days)
    train_pos, hold_pos = np.flatnonzero(~is_hold), np.flatnonzero(is_hold)
    if len(train_pos) < folds + 1:
        raise TrainingError(f"the days before the holdout have {len(train_pos)} rows, too few for "
                            f"{folds} forward-chaining folds")
    splitter = ForwardChainingSplit(np.asarray(dates, dtype=str)[train_pos], folds)
    split = {"method": "time", "holdout_days": holdout_days, "holdout_dates": hold_days,
             "train_dates": days[:-holdout_days], "n_train": int(len(train_pos)), "n_holdout": int(len(hold_pos))}
    cv = {"kind": "ForwardChainingSplit", "folds": folds, "shuffle": False}
    return train_pos, hold_pos, splitter, split, cv
