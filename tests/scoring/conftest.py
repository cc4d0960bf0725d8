"""Fixtures of the rollout tests: see rollout_helpers (trained models in a template store)."""

from rollout_helpers import store, template  # noqa: F401
