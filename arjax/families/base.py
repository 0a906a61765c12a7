"""The interface every per-position conditional distribution ("family") implements."""

import abc
import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int
from numpyro.distributions import constraints

__all__ = ["Family", "midpoint_uniform", "pick_component", "check_components", "check_floor"]


@dataclasses.dataclass(frozen=True)
class Family(abc.ABC):
    r"""The conditional distribution family of one position: ``p(x_i | x_{<i}) = f(x_i; θ_i)``.

    A net outputs the raw parameters ``θ_i`` (``num_params`` unconstrained reals) of every
    position; the family turns them into a normalised density. Families are frozen dataclasses
    (hashable static configuration, no arrays), so they live in a net's static fields.

    Every method works on one position: ``params`` is ``Float[num_params]``, ``value`` a scalar;
    batch with ``jax.vmap``.

    Attributes:
        name: the family's name in a model file's JSON configuration.
    """

    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Number of raw parameters the net outputs for a position of this family."""

    @property
    @abc.abstractmethod
    def num_features(self) -> int:
        """Width of the encoding of a value when it enters a net (``features``)."""

    @property
    def num_uniforms(self) -> int:
        """Uniform random numbers ``sample`` consumes per position."""
        return 1

    @property
    def is_discrete(self) -> bool:
        return False

    @property
    @abc.abstractmethod
    def support(self) -> constraints.Constraint:
        """NumPyro constraint of one value (event_dim 0)."""

    @abc.abstractmethod
    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        """Exact log-density (log-probability for tokens) of ``value``; ``-inf`` outside the support."""

    def sample(self, params: Float[Array, " P"], u: Float[Array, " U"]) -> Float[Array, ""]:
        """The value drawn by the uniforms ``u ∈ [0, 1)^num_uniforms`` (a deterministic function of ``u``).

        Differentiable in ``params`` by implicit reparameterisation (Figurnov, Mohamed, Mnih 2018):
        ``u = F(x; θ)`` stays uniform whichever way ``x`` was drawn, so ``dx/dθ = -∂_θF(x; θ) / p(x; θ)``,
        which also covers the discrete choice of a mixture component. For a circular family ``F``
        starts at 0, so the gradients of expectations are exact for functions periodic on the circle.
        """
        return _reparameterized_sample(self, params, u)

    @abc.abstractmethod
    def draw(self, params: Float[Array, " P"], u: Float[Array, " U"]) -> Float[Array, ""]:
        """``sample`` without its gradient rule."""

    @abc.abstractmethod
    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        """``P(X ≤ value)``; for a circular family ``P(0 ≤ X ≤ value)``."""

    @abc.abstractmethod
    def features(self, value: Float[Array, ""]) -> Float[Array, " F"]:
        """How ``value`` enters a net's input (one-hot, the value itself, Fourier features, …)."""

    @abc.abstractmethod
    def to_numpyro(self, params: Float[Array, "... P"]):
        """The conditional as a ``numpyro.distributions.Distribution`` (an independent implementation)."""

    def init_bias(self) -> np.ndarray:
        """Output-layer bias a fresh net starts from: zeros, except where symmetry must be broken."""
        return np.zeros(self.num_params)

    def feasible_value(self) -> float:
        """A value inside the support (stands in for out-of-support inputs before they reach a net)."""
        return 0.0

    def config(self) -> dict:
        """JSON-able description, ``{"family": name, **fields}``; ``family_from_config`` inverts it."""
        return {"family": self.name, **dataclasses.asdict(self)}


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _reparameterized_sample(family: Family, params, u):
    return family.draw(params, u)


@_reparameterized_sample.defjvp
def _reparameterized_sample_jvp(family: Family, primals, tangents):
    params, u = primals
    params_dot, _ = tangents
    x = family.draw(params, u)
    cdf_dot = jax.jvp(lambda p: family.cdf(p, x), (params,), (params_dot,))[1]
    return x, -cdf_dot / jnp.exp(family.log_prob(params, x))


def midpoint_uniform(u: Float[Array, "..."]) -> Float[Array, "..."]:
    """Move ``u`` from the grid ``{0, ε, 2ε, …, 1-ε}`` of ``jax.random.uniform`` to its midpoints.

    Keeps inverse CDFs finite: ``u = 0`` would map to ``-∞`` under a normal quantile. The shift
    is half the grid spacing, so the tails beyond the quantile of ``ε/2`` (about 5.3σ in float32,
    8.3σ in float64) are not drawn.

    >>> float(midpoint_uniform(jnp.float32(0.0))) > 0
    True
    """
    u = jnp.asarray(u)
    return u + jnp.finfo(u.dtype).eps / 2


def pick_component(log_weights: Float[Array, " M"], u: Float[Array, ""]) -> Int[Array, ""]:
    """Inverse-CDF choice of a mixture component: the ``k`` whose weight interval holds ``u ∈ [0, 1)``.

    A component of weight 0 has an empty interval and is never chosen.

    >>> int(pick_component(jnp.log(jnp.array([0.25, 0.5, 0.25])), jnp.float32(0.3)))
    1
    """
    cumulative = jnp.cumsum(jnp.exp(log_weights))
    k = jnp.sum(cumulative <= u * cumulative[-1]).astype(jnp.int32)
    return jnp.minimum(k, jnp.argmax(cumulative))  # u * total rounding up to total


def check_components(components) -> int:
    """Raise ``ValueError`` naming ``components`` unless it is an integer ≥ 1."""
    if not isinstance(components, (int, np.integer)) or isinstance(components, bool) or components < 1:
        raise ValueError(f"components must be an integer >= 1, got {components!r}")
    return int(components)


def check_floor(name: str, value) -> float:
    """Raise ``ValueError`` naming ``name`` unless it is a finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


