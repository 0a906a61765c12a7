"""The ``Autoregressive`` distribution seen through Distrax's interface."""

import distrax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.distribution import Autoregressive
from arjax.sampling import sample_and_log_prob

__all__ = ["AutoregressiveDistrax"]


class AutoregressiveDistrax(distrax.Distribution):
    """A ``distrax.Distribution`` with the numbers of ``arjax.Autoregressive(net, context, allowed)``.

    For the same key and sample shape, ``sample`` returns exactly the sequences that the NumPyro
    distribution's ``sample`` returns; ``log_prob`` agrees to the last bit.

    Example:
        >>> import jax
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> p = Autoregressive(MADE(num_positions=4, num_categories=2, key=jax.random.key(0)))
        >>> q = p.to_distrax()
        >>> bool((q.sample(seed=jax.random.key(1), sample_shape=3) == p.sample(jax.random.key(1), (3,))).all())
        True
    """

    def __init__(self, net, context=None, allowed=None):
        self._numpyro = Autoregressive(net, context=context, allowed=allowed)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self._numpyro.event_shape

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._numpyro.batch_shape

    def _sample_n(self, key: PRNGKeyArray, n: int) -> Int[Array, "n ..."]:
        return self._sample_n_and_log_prob(key, n)[0]

    def _sample_n_and_log_prob(self, key: PRNGKeyArray, n: int) -> tuple[Int[Array, "n ..."], Float[Array, "n ..."]]:
        d = self._numpyro
        return sample_and_log_prob(d.net, key, (n,), context=d.context, allowed=d.allowed)

    def log_prob(self, value: Int[Array, "... N"]) -> Float[Array, "..."]:
        return self._numpyro.log_prob(jnp.asarray(value))

    def conditional_log_probs(self, value: Int[Array, "... N"]) -> Float[Array, "... N K"]:
        """Normalised ``ln p(x_i = k | x_{<i})``, as ``Autoregressive.conditional_log_probs``."""
        return self._numpyro.conditional_log_probs(value)
