"""The scoring plan: which models score a partition and how, decided before any row is read.

:func:`build_plan` puts together, from small functions, everything :func:`~airflow_mlops.scoring.batch.score_partition`
streams with:

* the **model choice** (:func:`~airflow_mlops.scoring.selection.select_model`: pinned version, alias, or the alias
  as of the end of the logical day) and the registry's serving policy (:func:`load_main`);
* the **kill switch** (:func:`kill_switch_state`) and its **fallback** (the training baseline, no model loaded);
* the **shadow** model (:func:`load_shadow`: recorded beside the prediction, never served);
* the **canary** (:func:`load_canary`: a stable share of the rows scored for real by another alias's version,
  refused when it is the main model's version (:func:`same_version_conflict`) or does not predict like the
  main model (:func:`canary_conflict`));
* **explanations** (:func:`setup_explain`).

The rules that need no I/O (:func:`rollout_settings`, :func:`kill_switch_state`, :func:`same_version_conflict`,
:func:`canary_conflict`, :func:`shadow_conflict`, :meth:`ScoringPlan.drop_unfit`) take plain values, so each
policy is tested apart from the store. The plan is consumed by
:class:`~airflow_mlops.scoring.assemble.BatchAssembler` (one record batch in, one prediction-log batch out) and
by the streaming loop in :mod:`airflow_mlops.scoring.batch`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_mlops.registry.model_registry import LifecycleError, ModelRegistry, PolicyError, RegistryError
from airflow_mlops.scoring.policies import FallbackScorer, fallback_baseline, switch_is_on
from airflow_mlops.scoring.schema import FALLBACK
from airflow_mlops.scoring.scorer import Scorer, has_proba_columns, unfit_reason
from airflow_mlops.scoring.selection import select_model
from airflow_mlops.store.datasets import DataError

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.config.model import ExplainConfig, ModelConfig

log = logging.getLogger(__name__)

__all__ = ["KillSwitch", "ModelSlot", "ScoringPlan", "build_plan", "canary_conflict", "kill_switch_state",
           "load_canary", "load_main", "load_shadow", "rollout_settings", "same_version_conflict", "setup_explain",
           "shadow_conflict"]


class KillSwitch(TypedDict):
    """Why the kill switch is on: ``source`` is ``registry`` (the registry's flag) or the caller's name for
    its switch (e.g. ``airflow_variable``)."""

    source: str
    by: str | None
    at: str | None
    reason: str | None


@dataclass
class ModelSlot:
    """A second model beside the main one (shadow or canary): the alias asked for, the version and the
    loaded scorer when it is used, else why not (``error``)."""

    alias: str | None = None
    scorer: Scorer | None = None
    version: int | None = None
    error: str | None = None

    def drop(self, reason: str) -> None:
        self.scorer, self.error = None, reason


@dataclass
class ScoringPlan:
    """Everything decided before the first row: see the module docstring."""

    name: str
    ds: str
    #: :func:`select_model`'s answer, with ``scored_by`` = ``fallback`` under the kill switch
    chosen: dict[str, Any]
    scorer: Scorer | FallbackScorer
    keys: list[str]
    kill: KillSwitch | None = None
    fallback: dict[str, Any] | None = None
    shadow: ModelSlot = field(default_factory=ModelSlot)
    canary: ModelSlot = field(default_factory=ModelSlot)
    canary_share: float = 0.0
    explain: ExplainConfig | None = None
    #: explanation settings and timings for the summary (None when explanations are off)
    explain_info: dict[str, Any] | None = None

    @property
    def explain_k(self) -> int:
        return int(self.explain.top_k) if self.explain is not None else 0

    @property
    def scored_by(self) -> str:
        return str(self.chosen["scored_by"])

    def drop_unfit(self, schema: pa.Schema) -> None:
        """Stop using the shadow or canary model when it cannot score this input beside the main model
        (missing column, other dtype, other prediction type); the reason goes to the summary."""
        main_meta = self.scorer.meta
        if self.shadow.scorer is not None:
            why = unfit_reason("shadow", self.shadow.scorer.meta, main_meta, schema, self.keys)
            if why:
                log.warning("shadow %s v%s not used: %s", self.name, self.shadow.version, why)
                self.shadow.drop(why)
        if self.canary.scorer is not None:
            why = unfit_reason("canary", self.canary.scorer.meta, main_meta, schema, self.keys)
            if why:
                log.warning("canary %s v%s not used: %s; every row scored by v%d", self.name, self.canary.version,
                            why, self.scorer.version)
                self.canary.drop(why)

    def needed_columns(self, segment_column: str | None = None) -> list[str]:
        """Input columns read from each file: keys, the features of every model used, the segment column."""
        return list(dict.fromkeys([*self.keys, *self.scorer.features, *_features(self.shadow), *_features(self.canary),
                                   *([segment_column] if segment_column else [])]))

    def feature_dtypes(self) -> dict[str, str]:
        """Training dtypes of the columns read (the main model's win), for typed CSV reads."""
        out: dict[str, str] = {}
        for sc in (self.shadow.scorer, self.canary.scorer, self.scorer):
            if sc is not None:
                out.update(sc.meta.get("feature_dtypes") or {})
        return out


def _features(slot: ModelSlot) -> list[str]:
    return list(slot.scorer.features) if slot.scorer is not None else []


# ------------------------------------------------------------------------------------------
# rules without I/O
# ------------------------------------------------------------------------------------------
def rollout_settings(config: ModelConfig, canary_alias: str | None, canary_share: float | None,
                     explain: ExplainConfig | bool | None) -> tuple[str | None, float, ExplainConfig | None]:
    """The canary alias and share and the explanation settings of a run: the caller's values win over
    the config's ``canary`` / ``explain`` sections; ``explain=True`` means the config's (or the defaults),
    ``False`` off."""
    from airflow_mlops.config.model import ExplainConfig

    if canary_alias is None and config.canary is not None:
        canary_alias = config.canary.alias
    if canary_share is None:
        canary_share = config.canary.share if config.canary is not None else 0.0
    share = float(canary_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary_share must be between 0 and 1, got {share}")
    settings: ExplainConfig | None
    if explain is None:
        settings = config.explain
    elif explain is True:
        settings = config.explain or ExplainConfig()
    elif explain is False:
        settings = None
    else:
        settings = explain
    return canary_alias, share, settings


def kill_switch_state(registry_flag: dict[str, Any] | None, caller_value: Any,
                      caller_source: str = "caller") -> KillSwitch | None:
    """The kill switch of a run: the registry's flag (:meth:`ModelRegistry.is_model_disabled`) wins; else the
    caller's switch value when :func:`switch_is_on`; else None (off)."""
    if registry_flag:
        return {"source": "registry", "by": registry_flag.get("by"), "at": registry_flag.get("at"),
                "reason": registry_flag.get("reason")}
    if switch_is_on(caller_value):
        return {"source": caller_source, "by": None, "at": None, "reason": str(caller_value)}
    return None


def shadow_conflict(shadow: Scorer | FallbackScorer, main: Scorer | FallbackScorer) -> str | None:
    """Why a shadow model cannot be compared with the main one (regression vs classification), or None."""
    if (shadow.task == "regression") != (main.task == "regression"):
        return f"shadow v{shadow.version} is a {shadow.task} model, v{main.version} a {main.task} model"
    return None


def same_version_conflict(alias: str | None, version: int, main_version: int) -> str | None:
    """Why a model serving rows beside the main one (the canary) cannot: its ``alias`` resolves to
    ``version``, the main model's version, which scores every row already; else None. Checked before the
    model is loaded."""
    if version == main_version:
        return f"alias {alias!r} points to v{version}, the version scoring every row already"
    return None


def canary_conflict(canary: Scorer | FallbackScorer, main: Scorer | FallbackScorer) -> str | None:
    """Why a loaded canary cannot serve rows of the main model's partition, or None: it must predict the same
    task and classes, and have ``predict_proba`` exactly when the main model has (another version than the
    main one is :func:`same_version_conflict`, checked before loading)."""
    main_classes = list(getattr(main, "classes", None) or [])
    canary_classes = list(getattr(canary, "classes", None) or [])
    if canary.task != main.task or canary_classes != main_classes:
        return (f"canary v{canary.version} ({canary.task}, classes {canary_classes or None}) does not predict like "
                f"v{main.version} ({main.task}, classes {main_classes or None})")
    if canary.has_proba != main.has_proba:
        return f"canary v{canary.version} and v{main.version} differ in predict_proba"
    return None


# ------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------
def load_main(registry: ModelRegistry, name: str, chosen: dict[str, Any], kill: KillSwitch | None,
              ds: str, input_uri: str) -> tuple[Scorer | FallbackScorer, dict[str, Any] | None, dict[str, Any]]:
    """``(scorer, fallback, chosen)`` of the main model. Under the kill switch no model is loaded: the
    :class:`FallbackScorer` writes the version's training baseline and ``scored_by`` becomes ``fallback``.
    Otherwise the registry's serving policy (retired, rejected, awaiting approval) is checked before the
    signed, hash-verified, type-checked load: a refused model never has a row scored."""
    version = chosen["version"]
    if kill is not None:
        meta = registry.get_metadata(name, version)
        fallback = fallback_baseline(registry, name, version, meta)
        scorer = FallbackScorer(name, version, meta, fallback, has_proba_columns(registry, name, version, meta))
        log.warning("kill switch of %s is ON (%s%s): writing the naive fallback (%s from %s, v%d's training "
                    "baseline) instead of scoring with the model", name, kill["source"],
                    f", by {kill['by']}" if kill.get("by") else "", fallback["prediction"], fallback["source"],
                    version)
        return scorer, fallback, {**chosen, "scored_by": FALLBACK}
    try:
        registry.check_serving(name, version, role=str(chosen["scored_by"]))
        return Scorer.load(registry, name, version), None, chosen
    except (LifecycleError, PolicyError) as e:
        how = {"version": "pinned with version=", "alias": f"alias {chosen['alias']!r}",
               "alias_as_of": f"alias {chosen['alias']!r} as of {chosen['as_of']}",
               "alias_first": f"first version of alias {chosen['alias']!r}"}.get(chosen["selection"], "")
        raise type(e)(f"cannot score {input_uri} for {ds}: {name} v{version} ({how}) - {e}. "
                      f"Score with an allowed version (version=<n>) or point the alias elsewhere") from None


def load_shadow(registry: ModelRegistry, name: str, ds: str, alias: str | None, as_of: str | None,
                main: Scorer | FallbackScorer, kill: KillSwitch | None) -> ModelSlot:
    """The shadow model of ``alias`` (as of the main model's moment). A missing alias or an incompatible
    model leaves the slot empty with the reason: the shadow columns are then null."""
    slot = ModelSlot(alias=alias)
    if not alias:
        return slot
    if kill is not None:
        slot.error = "kill switch on: no model scored"
        return slot
    if not _fill_slot(slot, registry, name, ds, as_of, main, shadow_conflict, serving_role=None):
        log.warning("shadow alias %r of %s not used: %s; shadow columns are null", alias, name, slot.error)
    return slot


def load_canary(registry: ModelRegistry, name: str, ds: str, alias: str | None, share: float, as_of: str | None,
                main: Scorer | FallbackScorer, kill: KillSwitch | None) -> ModelSlot:
    """The canary model of ``alias`` (as of the main model's moment), checked by the serving policy (canary
    rows are real predictions), by :func:`same_version_conflict` and by :func:`canary_conflict`. When it cannot
    serve, the slot is empty with the reason and every row is scored by the main model."""
    slot = ModelSlot(alias=alias)
    if not alias or share <= 0:
        return slot
    if kill is not None:
        slot.error = "kill switch on: every row got the fallback"
        return slot
    if not _fill_slot(slot, registry, name, ds, as_of, main, canary_conflict, serving_role="canary"):
        log.warning("canary alias %r of %s not used: %s; every row scored by v%d", alias, name, slot.error,
                    main.version)
    return slot


def _fill_slot(slot: ModelSlot, registry: ModelRegistry, name: str, ds: str, as_of: str | None,
               main: Scorer | FallbackScorer, conflict: Callable[[Scorer, Scorer | FallbackScorer], str | None],
               serving_role: str | None) -> bool:
    """Resolve ``slot.alias`` as of ``as_of`` and load its model into the slot; a model that serves rows
    (``serving_role``) must be another version than the main one and pass the registry's serving policy.
    False, with ``slot.error`` saying why, when it cannot be used."""
    try:
        slot.version = int(select_model(registry, name, ds, alias=str(slot.alias), as_of=as_of)["version"])
        if serving_role is not None:
            same = same_version_conflict(slot.alias, slot.version, main.version)
            if same:
                raise RegistryError(same)
            registry.check_serving(name, slot.version, role=serving_role)
        scorer = Scorer.load(registry, name, slot.version)
        why = conflict(scorer, main)
        if why:
            raise RegistryError(why)
        slot.scorer = scorer
        return True
    except RegistryError as e:
        slot.error = f"{type(e).__name__}: {e}"
        return False


def setup_explain(registry: ModelRegistry, name: str, explain: ExplainConfig | None,
                  main: Scorer | FallbackScorer, canary: Scorer | None) -> dict[str, Any] | None:
    """Attach an explainer to the main and canary scorers (none under the kill switch: no model) and return
    the summary's ``explain`` record, or None when explanations are off."""
    if explain is None:
        return None
    info: dict[str, Any] = {"top_k": int(explain.top_k), "requested": explain.method, "method": None,
                            "seconds": 0.0, "setup_seconds": 0.0, "rows": 0}
    if not isinstance(main, Scorer):
        return info
    from airflow_mlops.scoring.explain import ExplainError, make_explainer

    t = time.perf_counter()
    for sc in (main, canary):
        if sc is None:
            continue
        try:
            sc.explainer = make_explainer(sc.pipeline, sc.meta, registry.load_reference(name, sc.version),
                                          explain.method)
        except ExplainError as e:
            raise DataError(f"explanations for {name} v{sc.version} cannot be computed: {e}") from None
    info["setup_seconds"] = round(time.perf_counter() - t, 3)
    info["method"] = main.explainer.describe()
    if canary is not None:
        info["canary_method"] = canary.explainer.describe()
    return info


def build_plan(config: ModelConfig, registry: ModelRegistry, ds: str, input_uri: str, *,
               alias: str = "champion", version: int | str | None = None, as_of: Any = None,
               as_of_logical_date: bool = False, if_alias_missing: str = "fail", shadow_alias: str | None = None,
               canary_alias: str | None = None, canary_share: float | None = None, disabled: Any = None,
               disabled_source: str = "caller", explain: ExplainConfig | bool | None = None) -> ScoringPlan:
    """The plan of one scoring run (see the module docstring); raises before anything is written when the
    main model cannot serve (unknown alias/version, refused by the policy, integrity failure)."""
    name = config.name
    canary_alias, share, explain_cfg = rollout_settings(config, canary_alias, canary_share, explain)
    chosen = select_model(registry, name, ds, alias=alias, version=version, as_of=as_of,
                          as_of_logical_date=as_of_logical_date, if_alias_missing=if_alias_missing)
    kill = kill_switch_state(registry.is_model_disabled(name), disabled, disabled_source)
    scorer, fallback, chosen = load_main(registry, name, chosen, kill, ds, input_uri)
    keys = list(scorer.meta.get("keys") or config.keys)
    shadow = load_shadow(registry, name, ds, shadow_alias, chosen["as_of"], scorer, kill)
    canary = load_canary(registry, name, ds, canary_alias, share, chosen["as_of"], scorer, kill)
    plan = ScoringPlan(name=name, ds=ds, chosen=chosen, scorer=scorer, keys=keys, kill=kill, fallback=fallback,
                       shadow=shadow, canary=canary, canary_share=share, explain=explain_cfg)
    plan.explain_info = setup_explain(registry, name, explain_cfg, scorer, canary.scorer)
    return plan
