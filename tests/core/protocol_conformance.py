"""Checked by mypy in test_protocols.py (not run): the local and the remote objects implement the
same typed interfaces. A method renamed, an argument dropped or a return type changed on either side
makes mypy report the line below that no longer type-checks."""

from __future__ import annotations

from shipyard.client import Client
from shipyard.features.protocol import FeaturesAPI
from shipyard.models.registry.protocol import RegistryAPI
from shipyard.tracking.protocol import TrackingAPI
from shipyard.workspace import Workspace


def local_registry(ws: Workspace) -> RegistryAPI:
    return ws.registry


def remote_registry(client: Client) -> RegistryAPI:
    return client.models


def local_tracking(ws: Workspace) -> TrackingAPI:
    return ws.tracking


def remote_tracking(client: Client) -> TrackingAPI:
    return client.runs


def local_features(ws: Workspace) -> FeaturesAPI:
    return ws.features


def remote_features(client: Client) -> FeaturesAPI:
    return client.features
