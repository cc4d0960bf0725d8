"""The registry's errors (each a :class:`RegistryError`) and the warning a deprecated version's load gives.
All are importable from :mod:`airflow_mlops.registry.model_registry` too."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of registry errors."""


class ModelNotFoundError(RegistryError, LookupError):
    pass


class VersionNotFoundError(RegistryError, LookupError):
    pass


class AliasNotFoundError(RegistryError, LookupError):
    pass


class IntegrityError(RegistryError):
    """A stored artifact does not match the sha256 recorded in metadata.json."""


class UntrustedModelError(RegistryError):
    """A model file holds types outside the trusted list, or types that can run code (always refused)."""


class SignatureMismatchError(IntegrityError):
    """A version's metadata or the state document is not signed by a key of this deployment, or was changed
    after it was signed."""


class UnsignedError(IntegrityError):
    """A version or state document has no signature (registered before signatures existed) and unsigned
    content was not allowed (``[mlops] allow_unsigned_versions``)."""


class PolicyError(RegistryError):
    """An alias move or a use of a version that the promotion policy forbids."""


class ConcurrentUpdateError(RegistryError):
    """A compare-and-swap update kept losing, or the expected current value did not hold."""


class ApprovalError(RegistryError):
    pass


class LifecycleError(RegistryError):
    """A lifecycle change or a use of a version that its lifecycle state forbids (retired)."""


class ModelImportError(RegistryError, ImportError):
    """A trusted type of a model file (the team's own class) cannot be imported where the load runs."""


class DeprecatedVersionWarning(UserWarning):
    """A deprecated version was loaded: it still works, but should be replaced."""


__all__ = [
    "ModelImportError",
    "AliasNotFoundError", "ApprovalError", "ConcurrentUpdateError", "DeprecatedVersionWarning", "IntegrityError",
    "LifecycleError", "ModelNotFoundError", "PolicyError", "RegistryError", "SignatureMismatchError",
    "UnsignedError", "UntrustedModelError", "VersionNotFoundError",
]
