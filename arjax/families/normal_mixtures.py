"""Mixtures of normals: ``GaussianMixture`` on ℝ and ``LogNormalMixture`` on (0, ∞)."""

import dataclasses
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import ndtr, ndtri
from jax.scipy.stats import norm
from jaxtyping import Array, Float
from numpyro.distributions import constraints

from arjax.families.base import Family, check_components, check_floor, midpoint_uniform, pick_component

__all__ = ["GaussianMixture", "LogNormalMixture"]


@dataclasses.dataclass(frozen=True)
class _NormalMixture(Family):
    """What Gaussian and log-normal mixtures share: ``M`` weights, locations and floored scales."""

    components: int = 1
    scale_floor: float = 1e-3

    def __post_init__(self):
        object.__setattr__(self, "components", check_components(self.components))
        object.__setattr__(self, "scale_floor", check_floor("scale_floor", self.scale_floor))

    @property
    def num_params(self) -> int:
        return 3 * self.components

    @property
    def num_features(self) -> int:
        return 1

    @property
    def num_uniforms(self) -> int:
        return 2

    def unpack(self, params: Float[Array, "... P"]) -> tuple[Array, Array, Array]:
        """``(log_weights, loc, scale)``, each ``[..., M]``, of the normals (of ``ln x`` for log-normals)."""
        m = self.components
        logits, loc, raw_scale = params[..., :m], params[..., m : 2 * m], params[..., 2 * m : 3 * m]
        return jax.nn.log_softmax(logits, axis=-1), loc, jax.nn.softplus(raw_scale) + self.scale_floor

    def init_bias(self) -> np.ndarray:
        return _spread_bias(self.components, self.scale_floor)


@dataclasses.dataclass(frozen=True)
class GaussianMixture(_NormalMixture):
    r"""``p(x) = Σ_k w_k N(x; μ_k, σ_k²)`` on ℝ with ``M = components`` components.

    Raw parameters ``[a_1..a_M, μ_1..μ_M, s_1..s_M]``: weights ``w = softmax(a)``, scales
    ``σ_k = softplus(s_k) + scale_floor``, so every finite parameter gives a finite density. A
    value enters a net as itself (standardise your data). A fresh net's components start at the
    normal quantiles ``Φ⁻¹((k + ½)/M)`` with ``σ = 1``, which breaks the symmetry between them.

    ``sample`` uses two uniforms: ``u[0]`` picks the component, ``u[1]`` is its normal quantile.

    Example:
        >>> import jax.numpy as jnp
        >>> family = GaussianMixture(2)
        >>> params = jnp.array([0.0, 0.0, -1.0, 1.0, 0.0, 0.0])
        >>> bool(jnp.isfinite(family.log_prob(params, jnp.float32(0.3))))
        True
        >>> float(family.cdf(params, jnp.float32(0.0)))   # symmetric about 0
        0.5
    """

    name = "GaussianMixture"

    @property
    def support(self) -> constraints.Constraint:
        return constraints.real

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        return _normal_mixture_log_prob(self.unpack(params), value)

    def draw(self, params: Float[Array, " P"], u: Float[Array, " 2"]) -> Float[Array, ""]:
        return _normal_mixture_sample(self.unpack(params), u)

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        log_w, loc, scale = self.unpack(params)
        return jnp.sum(jnp.exp(log_w) * ndtr((value - loc) / scale))

    def features(self, value: Float[Array, ""]) -> Float[Array, " 1"]:
        return jnp.reshape(value, (1,))

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.MixtureSameFamily:
        log_w, loc, scale = self.unpack(params)
        return dist.MixtureSameFamily(dist.Categorical(logits=log_w), dist.Normal(loc, scale))


@dataclasses.dataclass(frozen=True)
class LogNormalMixture(_NormalMixture):
    r"""``p(x) = Σ_k w_k LogNormal(x; μ_k, σ_k²)`` on ``x > 0``: a Gaussian mixture of ``ln x``.

    For lengths, scales, anything positive. Parameters as ``GaussianMixture`` (of ``ln x``),
    ``scale_floor`` included; a
    value enters a net as ``ln x``. ``x ≤ 0`` (or NaN) has log-density ``-inf``.

    Example:
        >>> import jax.numpy as jnp
        >>> family = LogNormalMixture(1)
        >>> params = jnp.array([0.0, 0.0, 0.5413])           # μ = 0, σ = softplus(0.5413) + 1e-3 ≈ 1
        >>> float(family.log_prob(params, jnp.float32(-1.0)))
        -inf
        >>> round(float(family.cdf(params, jnp.float32(1.0))), 3)   # the median is e^μ = 1
        0.5
    """

    name = "LogNormalMixture"

    @property
    def support(self) -> constraints.Constraint:
        return constraints.positive

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        positive = value > 0
        log_x = jnp.log(jnp.where(positive, value, 1.0))
        return jnp.where(positive, _normal_mixture_log_prob(self.unpack(params), log_x) - log_x, -jnp.inf)

    def draw(self, params: Float[Array, " P"], u: Float[Array, " 2"]) -> Float[Array, ""]:
        return jnp.exp(_normal_mixture_sample(self.unpack(params), u))

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        positive = value > 0
        log_x = jnp.log(jnp.where(positive, value, 1.0))
        log_w, loc, scale = self.unpack(params)
        return jnp.where(positive, jnp.sum(jnp.exp(log_w) * ndtr((log_x - loc) / scale)), 0.0)

    def features(self, value: Float[Array, ""]) -> Float[Array, " 1"]:
        return jnp.reshape(jnp.log(jnp.maximum(value, jnp.finfo(jnp.result_type(value, float)).tiny)), (1,))

    def feasible_value(self) -> float:
        return 1.0

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.MixtureSameFamily:
        log_w, loc, scale = self.unpack(params)
        return dist.MixtureSameFamily(dist.Categorical(logits=log_w), dist.LogNormal(loc, scale))


def _normal_mixture_log_prob(unpacked, value) -> Float[Array, ""]:
    log_w, loc, scale = unpacked
    finite = jnp.isfinite(value)
    value = jnp.where(finite, value, 0.0)
    log_p = jax.nn.logsumexp(log_w + norm.logpdf(value, loc, scale))
    return jnp.where(finite, log_p, -jnp.inf)


def _normal_mixture_sample(unpacked, u) -> Float[Array, ""]:
    log_w, loc, scale = unpacked
    k = pick_component(log_w, u[0])
    return loc[k] + scale[k] * ndtri(midpoint_uniform(u[1]))


def _spread_bias(components: int, floor: float) -> np.ndarray:
    loc = np.array([NormalDist().inv_cdf((k + 0.5) / components) for k in range(components)])
    raw_scale = np.full(components, np.log(np.expm1(1.0 - floor)))
    return np.concatenate([np.zeros(components), loc, raw_scale])
