"""The training error (importable from :mod:`airflow_mlops.training.trainer` too)."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(ValueError):
    """The data cannot be trained on as configured (too few rows, a class with one row, ...)."""
