"""The routing policy is pure: every rule, with nothing loaded."""

from __future__ import annotations

import pytest

from edge.errors import Unavailable, UnknownModel
from edge.router import decide
from edge.types import Preference

AUTO, LOCAL, CLOUD = Preference.AUTO, Preference.LOCAL_ONLY, Preference.CLOUD_ONLY
BOTH = ("onprem", "cloud")


def plan(preference=AUTO, remote=BOTH, **kw):
    args = dict(requested_model="", preference=preference, local_models=["small", "big"], default_model="small",
                remote_tiers=remote)
    args.update(kw)
    return decide(**args)


def codes(d):
    return [r.code for r in d.reasons]


def test_auto_walks_the_chain_with_local_last():
    d = plan()
    assert d.tiers == ("onprem", "cloud", "local") and d.model == "small" and codes(d) == ["CHAIN"]
    assert plan(chain=("cloud", "onprem", "local")).tiers == ("cloud", "onprem", "local")
    assert plan(remote=("cloud",)).tiers == ("cloud", "local")


def test_no_remote_tier_is_local_only():
    d = plan(remote=())
    assert d.tiers == ("local",) and codes(d) == ["LOCAL_ONLY_TIER"] and not d.wants_remote


def test_local_only_preference_and_config_never_leave_the_device():
    assert plan(LOCAL).tiers == ("local",) and codes(plan(LOCAL)) == ["PREF_LOCAL_ONLY"]
    d = plan(local_only=True)
    assert d.tiers == ("local",) and codes(d) == ["CONFIG_LOCAL_ONLY"]


def test_offline_keeps_auto_local_and_refuses_cloud_only():
    d = plan(offline=True)
    assert d.tiers == ("local",) and codes(d) == ["OFFLINE_MODE"]
    with pytest.raises(Unavailable, match="offline"):
        plan(CLOUD, offline=True)


def test_cloud_only_uses_remote_tiers_only():
    d = plan(CLOUD)
    assert d.tiers == ("onprem", "cloud") and codes(d) == ["PREF_CLOUD_ONLY"]
    with pytest.raises(Unavailable, match="no remote tier"):
        plan(CLOUD, remote=())
    with pytest.raises(Unavailable, match="local_only"):
        plan(CLOUD, local_only=True)


def test_named_local_model_stays_local_and_unknown_is_not_found():
    d = plan(requested_model="big")
    assert d.model == "big" and d.tiers == ("local",) and codes(d) == ["MODEL_REQUESTED"]
    with pytest.raises(UnknownModel, match="gpt-9"):
        plan(requested_model="gpt-9")


# -- steps 2-6: weigh() on an open AUTO decision ---------------------------------------------

from edge.router import Signals, Thresholds, weigh  # noqa: E402

TH = Thresholds()
OPEN = None


def open_decision():
    return plan()


def first(d):
    return d.tiers[0], [r.code for r in d.reasons]


def test_closed_decisions_are_not_reweighed():
    d = plan(LOCAL)
    assert weigh(d, Signals(difficulty=0.99), TH) is d


def test_no_signal_defaults_to_local_with_remote_as_overflow():
    d = weigh(open_decision(), Signals(), TH)
    assert d.tiers == ("local", "onprem", "cloud") and first(d)[1] == ["DEFAULT_LOCAL"]


def test_step_2_cost_keeps_it_local_when_remote_is_unaffordable():
    d = weigh(open_decision(), Signals(remote_affordable=False, difficulty=0.99, queue_depth=10), TH)
    assert first(d) == ("local", ["COST_REMOTE_UNAFFORDABLE"])


def test_step_3_latency():
    slow_local = Signals(max_latency_ms=500, local_predicted_s=2.0, remote_predicted_s=0.3)
    assert first(weigh(open_decision(), slow_local, TH)) == ("onprem", ["LATENCY_LOCAL_TOO_SLOW"])
    unknown_remote = Signals(max_latency_ms=500, local_predicted_s=2.0)
    assert first(weigh(open_decision(), unknown_remote, TH))[1] == ["LATENCY_LOCAL_TOO_SLOW"]
    both_slow = Signals(max_latency_ms=500, local_predicted_s=1.0, remote_predicted_s=3.0)
    assert first(weigh(open_decision(), both_slow, TH)) == ("local", ["LATENCY_BOTH_OVER", "DEFAULT_LOCAL"])
    fits = Signals(max_latency_ms=500, local_predicted_s=0.2, difficulty=0.1)
    assert first(weigh(open_decision(), fits, TH)) == ("local", ["LATENCY_LOCAL_OK", "DIFFICULTY_LOW"])
    no_profile = Signals(max_latency_ms=500, difficulty=0.1)
    assert first(weigh(open_decision(), no_profile, TH)) == ("local", ["DIFFICULTY_LOW"])


@pytest.mark.parametrize("signals,code", [
    (Signals(queue_depth=2), "LOAD_QUEUE"),
    (Signals(local_tps_now=30.0, local_tps_profiled=90.0), "LOAD_LOCAL_SLOW"),
    (Signals(memory_percent=97.0), "LOAD_MEMORY"),
    (Signals(on_battery=True, battery_percent=12.0), "LOAD_BATTERY"),
    (Signals(thermal_throttled=True), "LOAD_THERMAL"),
])
def test_step_4_load_sends_work_remote(signals, code):
    d = weigh(open_decision(), signals, TH)
    assert d.tiers == ("onprem", "cloud", "local") and first(d)[1] == [code]


def test_step_4_load_below_thresholds_does_nothing():
    calm = Signals(queue_depth=1, local_tps_now=80.0, local_tps_profiled=90.0, memory_percent=50.0, on_battery=True,
                   battery_percent=80.0)
    assert first(weigh(open_decision(), calm, TH)) == ("local", ["DEFAULT_LOCAL"])


def test_step_5_difficulty_and_step_6_cascade():
    hard = weigh(open_decision(), Signals(difficulty=0.8), TH)
    assert first(hard) == ("onprem", ["DIFFICULTY_HIGH"]) and not hard.cascade
    easy = weigh(open_decision(), Signals(difficulty=0.1), TH)
    assert first(easy) == ("local", ["DIFFICULTY_LOW"]) and not easy.cascade
    unsure = weigh(open_decision(), Signals(difficulty=0.3), TH)
    assert first(unsure) == ("local", ["CASCADE_ARMED"]) and unsure.cascade
    no_cascade = weigh(open_decision(), Signals(difficulty=0.3), Thresholds(cascade=False))
    assert first(no_cascade) == ("local", ["DIFFICULTY_LOW"]) and not no_cascade.cascade


def test_steps_apply_in_order():
    # Cost beats latency beats load beats difficulty.
    everything = Signals(remote_affordable=False, max_latency_ms=100, local_predicted_s=5.0, queue_depth=9,
                         difficulty=0.9)
    assert first(weigh(open_decision(), everything, TH))[1] == ["COST_REMOTE_UNAFFORDABLE"]
    latency_and_load = Signals(max_latency_ms=100, local_predicted_s=5.0, queue_depth=9, difficulty=0.1)
    assert first(weigh(open_decision(), latency_and_load, TH))[1] == ["LATENCY_LOCAL_TOO_SLOW"]
    load_and_easy = Signals(queue_depth=9, difficulty=0.1)
    assert first(weigh(open_decision(), load_and_easy, TH))[1] == ["LOAD_QUEUE"]
