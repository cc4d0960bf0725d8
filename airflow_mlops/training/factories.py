"""Pipelines built by the team's own factories (``preprocess: {factory: ...}`` / ``pipeline: {factory: ...}``).

Either way the result has the same two named steps as the built-in pipeline, ``preprocess`` then
``estimator``, so search spaces (``estimator__<param>``), scoring, the smoke test and explanations treat it
alike: the factory's transformer becomes the ``preprocess`` step; a factory ``Pipeline``'s steps before the
last become a ``Pipeline`` in the ``preprocess`` step (``"passthrough"`` when there are none) and its last
step, which must be an instance of ``estimator.class``, becomes ``estimator`` with ``estimator.params`` (and
``training.seed`` as ``random_state`` unless set) applied on top of what the factory set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_mlops.config.model import ConfigError, ModelConfig, thaw


def _describe(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def factory_pipeline(config: ModelConfig, features: Sequence[str], numeric: Sequence[str],
                     categorical: Sequence[str]) -> Any:
    """The unfitted ``Pipeline([("preprocess", ...), ("estimator", ...)])`` of a model with a factory.

    Raises:
        ConfigError: the factory fails or returns something else than the section promises; ``field`` is
            ``preprocess.factory``, ``pipeline.factory`` or ``estimator.class``.
    """
    from sklearn.pipeline import Pipeline

    section = "pipeline" if config.pipeline is not None else "preprocess"
    factory = config.pipeline if config.pipeline is not None else config.preprocess
    assert factory is not None
    try:
        built = factory.call(features, numeric, categorical)
    except Exception as exc:  # noqa: BLE001 - the team's code: any failure is reported against the field
        raise ConfigError(f"{factory.path} failed: {type(exc).__name__}: {exc}", field=f"{section}.factory",
                          source=config.source) from exc
    if config.pipeline is None:
        if isinstance(built, Pipeline) and built.steps and _is_final_estimator(built.steps[-1][1]):
            raise ConfigError(f"{factory.path} returned a Pipeline ending in an estimator "
                              f"({_describe(built.steps[-1][1])}); use pipeline: {{factory: {factory.path}}} for a "
                              "whole pipeline, or return only the feature transformations",
                              field="preprocess.factory", source=config.source)
        if not (callable(getattr(built, "fit", None)) and callable(getattr(built, "transform", None))):
            raise ConfigError(f"{factory.path} returned {_describe(built)}, not a scikit-learn transformer "
                              "(an object with fit and transform)", field="preprocess.factory", source=config.source)
        return Pipeline([("preprocess", built), ("estimator", config.estimator.build(seed=config.training.seed))])
    if not isinstance(built, Pipeline) or not built.steps:
        raise ConfigError(f"{factory.path} returned {_describe(built)}, not an unfitted sklearn.pipeline.Pipeline",
                          field="pipeline.factory", source=config.source)
    final = built.steps[-1][1]
    cls: Any = config.estimator.load_class()
    if not isinstance(final, cls):
        raise ConfigError(f"the last step of the Pipeline {factory.path} returned is {_describe(final)}, but "
                          f"estimator.class names {config.estimator.class_path}", field="estimator.class",
                          source=config.source)
    params = thaw(config.estimator.params)
    seed = config.training.seed
    if "random_state" not in params and "random_state" in final.get_params() and \
            final.get_params()["random_state"] is None:
        params["random_state"] = seed
    final.set_params(**params)
    steps = built.steps[:-1]
    preprocess: Any = Pipeline(steps) if steps else "passthrough"
    return Pipeline([("preprocess", preprocess), ("estimator", final)])


def _is_final_estimator(step: Any) -> bool:
    return callable(getattr(step, "predict", None))


__all__ = ["factory_pipeline"]
