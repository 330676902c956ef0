"""Binning and WOE: numeric and categorical variables, eight methods, a servable JSON spec."""

from shipyard.risk.binning.binner import METHODS, Binner
from shipyard.risk.binning.feature import FeatureBins

WOETransformer = Binner

__all__ = ["METHODS", "Binner", "FeatureBins", "WOETransformer"]
