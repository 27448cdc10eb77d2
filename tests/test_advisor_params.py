"""scikit-learn habits: get_params/set_params round-trip, clone, a repr that shows what differs."""

import pytest

from advisor import Advisor, AdvisorError, shipped_runs


def test_get_params_round_trips_through_the_constructor():
    advisor = Advisor(noise=0.05, spread=0.8, random_state=3)
    params = advisor.get_params()
    assert params["noise"] == 0.05 and params["spread"] == 0.8 and set(params) >= {"task_scale", "n_draws"}
    assert Advisor(**params).get_params() == params


def test_set_params_changes_settings_and_drops_a_stale_fit():
    advisor = Advisor().fit(shipped_runs())
    assert advisor.set_params(panel_scale=0.3) is advisor
    assert advisor.panel_scale == 0.3 and not hasattr(advisor, "theta_")
    with pytest.raises(AdvisorError, match="no setting 'width'"):
        advisor.set_params(width=2)


def test_a_clone_the_scikit_learn_way_copies_settings_not_the_fit():
    fitted = Advisor(noise=0.04).fit(shipped_runs())
    copy = type(fitted)(**fitted.get_params(deep=False))  # what sklearn.base.clone does
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "theta_")


def test_repr_shows_only_what_differs_from_the_defaults():
    assert repr(Advisor()) == "Advisor()"
    assert repr(Advisor(noise=0.05, n_draws=100)) == "Advisor(noise=0.05, n_draws=100)"
