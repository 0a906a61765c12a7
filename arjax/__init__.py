"""arjax: autoregressive probabilistic models over sequences of tokens and real values in JAX."""

from arjax import crystal, estimators, families, mcmc, nn, objectives, parallel, svi, symmetry, targets, testing, train
from arjax.distrax_view import AutoregressiveDistrax
from arjax.distribution import Autoregressive
from arjax.model_file import ModelFileError, load, save
from arjax.sampling import sample, sample_and_log_prob

__all__ = [
    "Autoregressive",
    "AutoregressiveDistrax",
    "ModelFileError",
    "crystal",
    "estimators",
    "families",
    "load",
    "mcmc",
    "nn",
    "objectives",
    "parallel",
    "sample",
    "sample_and_log_prob",
    "save",
    "svi",
    "symmetry",
    "targets",
    "testing",
    "train",
]
__version__ = "0.1.0"
