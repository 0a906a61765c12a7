"""``Categorical(K)``: a token in ``0..K-1``, the family of every discrete position."""

import dataclasses

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jaxtyping import Array, Bool, Float, Int
from numpyro.distributions import constraints

from arjax.allowed import masked_log_softmax
from arjax.families.base import Family, pick_component

__all__ = ["Categorical"]


@dataclasses.dataclass(frozen=True)
class Categorical(Family):
    """Tokens ``0..K-1`` with probabilities ``softmax(params)``; ``params`` are the ``K`` logits.

    The one family that reads an ``allowed`` row: disallowed tokens get probability exactly 0.
    A token enters a net one-hot. In a sequence that mixes tokens and real values the token is
    stored as an exact integer in the float array.

    Example:
        >>> import jax.numpy as jnp
        >>> family = Categorical(3)
        >>> round(float(family.log_prob(jnp.zeros(3), jnp.int32(2))), 4)   # ln 1/3
        -1.0986
        >>> int(family.sample(jnp.array([0.0, 0.0, 10.0]), jnp.array([0.5])))
        2
    """

    num_categories: int
    name = "Categorical"

    def __post_init__(self):
        k = self.num_categories
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"num_categories must be an integer >= 1, got {k!r}")

    @property
    def num_params(self) -> int:
        return self.num_categories

    @property
    def num_features(self) -> int:
        return self.num_categories

    @property
    def is_discrete(self) -> bool:
        return True

    @property
    def support(self) -> constraints.Constraint:
        return constraints.integer_interval(0, self.num_categories - 1)

    def log_prob(
        self, params: Float[Array, " K"], value, allowed: Bool[Array, " K"] | None = None, *, dead_ends: bool = False
    ) -> Float[Array, ""]:
        """``ln p(value)``; ``-inf`` for a disallowed token or one outside ``0..K-1`` (or not whole), and at a dead
        end (``dead_ends=True`` and no token allowed)."""
        token = self.token(value)
        picked = masked_log_softmax(params, allowed, dead_ends=dead_ends)[token]
        return jnp.where(self.support(value), picked, -jnp.inf)

    def sample(self, params: Float[Array, " K"], u: Float[Array, " 1"], allowed=None) -> Int[Array, ""]:
        """The token drawn by ``u[0]`` (no gradient: tokens are not reparameterisable)."""
        return self.sample_and_log_prob(params, u, allowed)[0]

    def draw(self, params: Float[Array, " K"], u: Float[Array, " 1"]) -> Int[Array, ""]:
        return self.sample(params, u)

    def sample_and_log_prob(
        self,
        params: Float[Array, " K"],
        u: Float[Array, " 1"],
        allowed: Bool[Array, " K"] | None = None,
        *,
        dead_ends: bool = False,
    ) -> tuple[Int[Array, ""], Float[Array, ""]]:
        """Inverse-CDF draw: the token whose cumulative-probability interval holds ``u[0]``. At a dead end
        (``dead_ends=True`` and no token allowed) every interval is empty: token 0, log-probability ``-inf``."""
        log_p = masked_log_softmax(params, allowed, dead_ends=dead_ends)
        token = pick_component(log_p, jnp.reshape(u, (-1,))[0])
        return token, log_p[token]

    def cdf(self, params: Float[Array, " K"], value) -> Float[Array, ""]:
        return jnp.cumsum(jax.nn.softmax(params))[self.token(value)]

    def features(self, value) -> Float[Array, " K"]:
        return jax.nn.one_hot(self.token(value), self.num_categories)

    def token(self, value) -> Int[Array, ""]:
        """``value`` as an int32 token, clipped into ``0..K-1`` (check ``in_support`` separately)."""
        return jnp.clip(jnp.asarray(value), 0, self.num_categories - 1).astype(jnp.int32)

    def to_numpyro(
        self, params: Float[Array, "... K"], allowed: Bool[Array, "... K"] | None = None
    ) -> dist.Categorical:
        """``numpyro.distributions.Categorical`` (by ``probs`` when ``allowed`` zeroes some tokens)."""
        if allowed is None:
            return dist.Categorical(logits=params)
        return dist.Categorical(probs=jnp.exp(masked_log_softmax(params, allowed)))
