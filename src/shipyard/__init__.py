"""Shipyard: a self-hosted, one-stop machine-learning platform."""

from shipyard.errors import ShipyardError

__version__ = "0.1.0"

__all__ = ["ShipyardError", "__version__"]
