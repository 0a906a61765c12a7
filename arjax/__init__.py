"""arjax: autoregressive probabilistic models over discrete sequences in JAX."""

from arjax import nn, testing
from arjax.distribution import Autoregressive
from arjax.distrax_view import AutoregressiveDistrax
from arjax.sampling import sample, sample_and_log_prob

__all__ = ["Autoregressive", "AutoregressiveDistrax", "nn", "sample", "sample_and_log_prob", "testing"]
__version__ = "0.1.0"
