"""Model files in and out of the registry with skops: never pickle, and only types that are explicitly trusted.

:func:`load_skops_bytes` is the one loader of a stored model (the registry, the smoke test of a staged model);
both functions are importable from :mod:`airflow_mlops.registry.model_registry` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.errors import IntegrityError, ModelImportError, UntrustedModelError
from airflow_mlops.trust.types import TRUSTED_TYPES, dangerous_types, referenced_types

if TYPE_CHECKING:
    import warnings


def _quiet() -> warnings.catch_warnings[None]:
    """skops resolves numpy ufuncs by scanning every loaded module; with Airflow loaded that trips
    thousands of Airflow deprecation shims. Silence those warnings (they are not ours to fix)."""
    import warnings

    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def dump_skops_bytes(model: Any) -> bytes:
    ctx = _quiet()
    try:
        import skops.io as sio

        data: bytes = sio.dumps(model)
        return data
    finally:
        ctx.__exit__(None, None, None)


def load_skops_bytes(data: bytes, trusted_types: Iterable[str] = (), source: str = "<bytes>") -> Any:
    """Load a skops payload. Never unpickles; never builds a type that is not explicitly trusted.

    Every type the file references is read from its schema first: one that can execute code, import, or
    reach files/processes/attributes (:func:`airflow_mlops.trust.types.is_dangerous`) refuses the file
    whatever ``trusted_types`` says. The types skops does not trust by default must each be named, fully
    qualified, in :data:`~airflow_mlops.trust.types.TRUSTED_TYPES`, the package's pipeline helpers, or
    ``trusted_types`` (the classes a model's config names). Refusals raise :class:`UntrustedModelError`
    before any object is built."""
    ctx = _quiet()
    try:
        import skops.io as sio

        from airflow_mlops.training.steps import LEGACY_PIPELINE_TYPES, PIPELINE_CUSTOM_TYPES

        try:
            referenced = referenced_types(data, source)
        except ValueError as e:
            raise IntegrityError(str(e)) from None
        dangerous = dangerous_types(referenced)
        if not dangerous:
            try:
                untrusted = sio.get_untrusted_types(data=data)
            except Exception as e:
                raise IntegrityError(f"{source} is not a readable skops file: {type(e).__name__}: {e}") from None
            dangerous = dangerous_types(untrusted)
        if dangerous:
            raise UntrustedModelError(
                f"{source} references types that can run code, import, or reach files and processes: {dangerous}. "
                "They are refused whatever the trusted list says; a model never needs them. Do not use this file."
            )
        allowed = (TRUSTED_TYPES | set(PIPELINE_CUSTOM_TYPES) | set(LEGACY_PIPELINE_TYPES)
                   | {str(t) for t in trusted_types})
        refused = sorted(t for t in untrusted if t not in allowed)
        if refused:
            raise UntrustedModelError(
                f"{source} contains types outside the trusted list: {refused}. If they are your own classes, name "
                "them (fully qualified) in the model config's estimator.class or estimator.trusted_types; never "
                "load files of unknown origin."
            )
        try:
            return sio.loads(data, trusted=sorted(set(untrusted)))
        except ImportError as e:  # a trusted type's module is not importable here
            import socket
            import sys

            module = getattr(e, "name", None) or str(e)
            raise ModelImportError(
                f"{source} needs module {module!r}, which cannot be imported on worker {socket.gethostname()} "
                f"({type(e).__name__}: {e}). Install the package that provides it on every worker, or keep the "
                f"module beside the Dag files (the Dags folder is on sys.path); python: {sys.executable}"
            ) from None
    finally:
        ctx.__exit__(None, None, None)


__all__ = ["dump_skops_bytes", "load_skops_bytes"]
