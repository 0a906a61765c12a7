"""Per-position conditional distribution families: tokens, real, circular and positive values."""

from arjax.families.base import Family
from arjax.families.categorical import Categorical
from arjax.families.constraints import unit_circle
from arjax.families.normal_mixtures import GaussianMixture, LogNormalMixture
from arjax.families.von_mises import VonMisesMixture, von_mises_cdf

__all__ = ["Family", "Categorical", "GaussianMixture", "LogNormalMixture", "VonMisesMixture", "unit_circle",
           "von_mises_cdf"]
