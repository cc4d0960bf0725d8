"""The champion/challenger decision: direction-aware comparison, margins, floors and ceilings."""

from airflow_mlops.registry.gate import decide


def test_no_champion_promotes_when_constraints_hold():
    d = decide("roc_auc", {"roc_auc": 0.8}, floors={"roc_auc": 0.7})
    assert d.promote and "no champion yet" in d.summary()


def test_floor_broken_blocks_even_without_champion():
    d = decide("roc_auc", {"roc_auc": 0.55}, floors={"roc_auc": 0.6})
    assert not d.promote
    assert [c.describe() for c in d.broken] == ["floor roc_auc 0.55 >= 0.6: BROKEN"]
    assert "below the floor 0.6" in d.summary()


def test_must_beat_champion_by_margin():
    assert decide("roc_auc", {"roc_auc": 0.81}, {"roc_auc": 0.80}, champion_version=1).promote
    d = decide("roc_auc", {"roc_auc": 0.805}, {"roc_auc": 0.80}, champion_version=1, min_improvement=0.01)
    assert not d.promote and "by the margin 0.01" in d.summary()
    tie = decide("roc_auc", {"roc_auc": 0.8}, {"roc_auc": 0.8}, champion_version=1)
    assert not tie.promote  # equal is not better


def test_lower_is_better_metrics():
    assert decide("rmse", {"rmse": 1.0}, {"rmse": 1.2}, champion_version=3).promote
    d = decide("rmse", {"rmse": 1.3}, {"rmse": 1.2}, champion_version=3)
    assert not d.promote and "lower is better" in d.summary()


def test_ceiling_broken_even_when_better():
    d = decide("roc_auc", {"roc_auc": 0.9, "log_loss": 0.9}, {"roc_auc": 0.8}, champion_version=1,
               ceilings={"log_loss": 0.5})
    assert not d.promote
    assert "log_loss = 0.9 is above the ceiling 0.5" in d.summary()
    assert d.to_dict()["checks"][0]["constraint"] == "ceiling"


def test_a_model_no_better_than_the_naive_baseline_never_serves():
    """First version included: no floor configured, no champion, yet a regressor worse than the mean (or a
    classifier no better than the class prior) is kept as challenger, the reason naming both scores."""
    d = decide("rmse", {"rmse": 5.19}, baseline={"rmse": 4.97})
    assert not d.promote
    assert [c.violation() for c in d.broken] == ["rmse 5.19 does not beat the naive baseline 4.97"]
    assert "predicts no better than the class prior / the mean" in d.summary()
    tie = decide("roc_auc", {"roc_auc": 0.5}, baseline={"roc_auc": 0.5})
    assert not tie.promote  # equal is not better
    ok = decide("roc_auc", {"roc_auc": 0.71}, {"roc_auc": 0.7}, champion_version=1, baseline={"roc_auc": 0.5})
    assert ok.promote and [c.constraint for c in ok.checks] == ["beats_champion", "beats_baseline"]
