"""The routing policy is pure: every rule, with nothing loaded."""

from __future__ import annotations

import pytest

from edge.errors import Unavailable, UnknownModel
from edge.router import decide
from edge.v1 import router_pb2 as pb

AUTO, LOCAL, CLOUD = pb.ROUTE_PREFERENCE_AUTO, pb.ROUTE_PREFERENCE_LOCAL_ONLY, pb.ROUTE_PREFERENCE_CLOUD_ONLY
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
