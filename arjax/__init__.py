"""arjax: autoregressive probabilistic models over discrete sequences in JAX."""

from arjax import crystal, estimators, mcmc, nn, objectives, parallel, svi, symmetry, targets, testing, train
from arjax.distrax_view import AutoregressiveDistrax
from arjax.distribution import Autoregressive
from arjax.sampling import sample, sample_and_log_prob

__all__ = [
    "Autoregressive",
    "AutoregressiveDistrax",
    "crystal",
    "estimators",
    "mcmc",
    "nn",
    "objectives",
    "parallel",
    "sample",
    "sample_and_log_prob",
    "svi",
    "symmetry",
    "targets",
    "testing",
    "train",
]
__version__ = "0.1.0"
