"""An engine built from in-memory sources, with no workspace behind it (notebooks, edge runtimes)."""

from __future__ import annotations

import pytest

from shipyard.errors import NotFound
from shipyard.serving import ServingEngine
from shipyard.serving.hotswap import Follower


def test_an_engine_without_a_model_source_says_the_model_is_not_registered():
    engine = ServingEngine()
    with pytest.raises(NotFound, match="'credit' is not registered") as caught:
        engine.model("credit", "champion")
    assert caught.value.details == {"model": "credit"}


def test_the_follower_of_an_engine_without_a_workspace_has_no_recorded_shares_to_follow():
    follower = Follower(ServingEngine())
    assert follower.sync_canaries() == []
    assert follower.check() == []
