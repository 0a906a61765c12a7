"""Two position families the crystal encoding needs beside those of ``arjax.families``.

* ``Gated(base, off_value)``: a position that is either drawn from ``base`` or fixed at
  ``off_value``, as a leading raw parameter (the gate) says. The crystal net sets the gate from the
  prefix (a coordinate slot is on only when its site's Wyckoff letter has that many free
  coordinates), so an inactive slot is a point mass: log-probability 0 at ``off_value``, ``-inf``
  elsewhere, and it adds no dimension to the density.
* ``LogitNormalMixture(M, low, high)``: values in the open interval ``(low, high)`` (lattice
  angles in degrees), a Gaussian mixture of ``logit((x - low) / (high - low))``.
* ``IntervalLogitNormalMixture(M, low, high)``: the same on a sub-interval ``(l, u)`` of
  ``(low, high)`` that two leading raw parameters give. The crystal net sets them from the prefix
  to the angles ``γ`` that close a cell with the drawn ``α, β`` (``|α - β| < γ < min(α + β, 360° - α - β)``),
  so every triclinic triple the model draws is a cell.
* ``TruncatedLogNormalMixture(M)``: a log-normal mixture cut below a bound that a leading raw
  parameter gives (``ln`` of the bound). The crystal net sets it from the prefix to the smallest
  lattice scale at which no two atoms are too close, so the model draws only valid cells, the
  way a token mask allows only valid tokens, and stays exactly normalised.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr, ndtr, ndtri
from jaxtyping import Array, Float
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform, ExpTransform, SigmoidTransform

from arjax.families import Family, GaussianMixture, LogNormalMixture
from arjax.families.base import midpoint_uniform, pick_component

__all__ = ["Gated", "IntervalLogitNormalMixture", "LogitNormalMixture", "TruncatedLogNormalMixture"]


@dataclasses.dataclass(frozen=True)
class Gated(Family):
    r"""``base`` when the gate parameter is positive, else the point mass at ``off_value``.

    Raw parameters ``[gate, θ_base…]``. With the gate on, ``log_prob``, ``sample``, ``cdf`` are
    those of ``base``; with it off the value is exactly ``off_value`` (``log_prob`` 0 there and
    ``-inf`` anywhere else). ``off_value`` must lie in ``base``'s support. A value enters a net as
    ``base``'s features.

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.families import VonMisesMixture
        >>> family = Gated(VonMisesMixture(1), off_value=0.0)
        >>> on, off = jnp.array([1.0, 0.0, 0.25, 2.0]), jnp.array([-1.0, 0.0, 0.25, 2.0])
        >>> float(family.log_prob(off, jnp.float32(0.0))), float(family.log_prob(off, jnp.float32(0.3)))
        (0.0, -inf)
        >>> round(float(family.sample(on, jnp.array([0.5, 0.5]))), 4), float(family.sample(off, jnp.array([0.5, 0.5])))
        (0.25, 0.0)
    """

    base: Family
    off_value: float
    name = "Gated"

    def __post_init__(self):
        if not isinstance(self.base, Family) or self.base.is_discrete:
            raise ValueError(f"base must be a continuous arjax.families.Family, got {self.base!r}")
        object.__setattr__(self, "off_value", float(self.off_value))
        if not bool(self.base.support(jnp.asarray(self.off_value))):
            raise ValueError(f"off_value={self.off_value} is outside the support of {self.base!r}")

    @property
    def num_params(self) -> int:
        return 1 + self.base.num_params

    @property
    def num_features(self) -> int:
        return self.base.num_features

    @property
    def num_uniforms(self) -> int:
        return self.base.num_uniforms

    @property
    def support(self) -> constraints.Constraint:
        return self.base.support

    def is_on(self, params: Float[Array, " P"]) -> Array:
        """Whether the gate ``params[0]`` is positive."""
        return params[..., 0] > 0

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        on = self.is_on(params)
        base = self.base.log_prob(params[1:], value)
        point = jnp.where(value == self.off_value, 0.0, -jnp.inf).astype(base.dtype)
        return jnp.where(on, base, point)

    def draw(self, params: Float[Array, " P"], u: Float[Array, " U"]) -> Float[Array, ""]:
        value = self.base.draw(params[1:], u)
        return jnp.where(self.is_on(params), value, jnp.asarray(self.off_value, value.dtype))

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        base = self.base.cdf(params[1:], value)
        return jnp.where(self.is_on(params), base, (value >= self.off_value).astype(base.dtype))

    def features(self, value: Float[Array, ""]) -> Float[Array, " F"]:
        return self.base.features(value)

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.Distribution:
        """``base``'s distribution where the gate is on, ``Delta(off_value)`` where it is off (gates must be known)."""
        on = np.asarray(self.is_on(params))
        if on.all():
            return self.base.to_numpyro(params[..., 1:])
        if not on.any():
            return dist.Delta(jnp.full(params.shape[:-1], self.off_value))
        raise ValueError("to_numpyro needs gates that are all on or all off; split the batch by gate")

    def init_bias(self) -> np.ndarray:
        return np.concatenate([[1.0], self.base.init_bias()])

    def feasible_value(self) -> float:
        return self.off_value

    def config(self) -> dict:
        return {"family": self.name, "base": self.base.config(), "off_value": self.off_value}


@dataclasses.dataclass(frozen=True)
class LogitNormalMixture(Family):
    r"""``x = low + (high - low) σ(z)`` with ``z ~ Σ_k w_k N(μ_k, σ_k²)``: a mixture on ``(low, high)``.

    Raw parameters as ``GaussianMixture(components)`` (of ``z``); the density of ``x`` carries the
    Jacobian ``dz/dx = (high - low) / ((x - low)(high - x))``. A value enters a net as ``z``. For
    lattice angles in degrees: ``low=0, high=180``.

    Example:
        >>> import jax.numpy as jnp
        >>> family = LogitNormalMixture(1, low=0.0, high=180.0)
        >>> params = jnp.array([0.0, 0.0, 0.5413])          # z ~ N(0, 1): median angle 90°
        >>> round(float(family.cdf(params, jnp.float32(90.0))), 4)
        0.5
        >>> float(family.log_prob(params, jnp.float32(180.0)))
        -inf
    """

    components: int = 1
    low: float = 0.0
    high: float = 180.0
    scale_floor: float = 1e-3
    name = "LogitNormalMixture"

    def __post_init__(self):
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"need finite low < high, got low={self.low}, high={self.high}")
        object.__setattr__(self, "components", self._normal.components)

    @property
    def _normal(self) -> GaussianMixture:
        return GaussianMixture(self.components, self.scale_floor)

    @property
    def num_params(self) -> int:
        return self._normal.num_params

    @property
    def num_features(self) -> int:
        return 1

    @property
    def num_uniforms(self) -> int:
        return 2

    @property
    def support(self) -> constraints.Constraint:
        return constraints.open_interval(self.low, self.high)

    def logit(self, value: Float[Array, ""]) -> Float[Array, ""]:
        """``z = logit((x - low) / (high - low))``, finite for ``x`` strictly inside the interval."""
        return _logit(value, self.low, self.high)

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        return _log_prob(self._normal, params, value, self.low, self.high)

    def draw(self, params: Float[Array, " P"], u: Float[Array, " 2"]) -> Float[Array, ""]:
        return self.low + (self.high - self.low) * jax.nn.sigmoid(self._normal.draw(params, u))

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        return _cdf(self._normal, params, value, self.low, self.high)

    def features(self, value: Float[Array, ""]) -> Float[Array, " 1"]:
        return jnp.reshape(self.logit(value), (1,))

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.TransformedDistribution:
        return dist.TransformedDistribution(
            self._normal.to_numpyro(params),
            [SigmoidTransform(), AffineTransform(self.low, self.high - self.low)],
        )

    def init_bias(self) -> np.ndarray:
        return self._normal.init_bias()

    def feasible_value(self) -> float:
        return 0.5 * (self.low + self.high)


def _logit(value, low, high):
    fraction = jnp.clip((value - low) / (high - low), 1e-30, 1 - 1e-7)
    return jnp.log(fraction) - jnp.log1p(-fraction)


def _log_prob(normal: GaussianMixture, params, value, low, high):
    """Log-density on ``(low, high)`` of ``low + (high - low) σ(z)``, ``z`` from ``normal``."""
    inside = (value > low) & (value < high)
    safe = jnp.where(inside, value, 0.5 * (low + high))
    jacobian = jnp.log(high - low) - jnp.log(safe - low) - jnp.log(high - safe)
    return jnp.where(inside, normal.log_prob(params, _logit(safe, low, high)) + jacobian, -jnp.inf)


def _cdf(normal: GaussianMixture, params, value, low, high):
    log_w, loc, scale = normal.unpack(params)
    inside = jnp.sum(jnp.exp(log_w) * ndtr((_logit(value, low, high) - loc) / scale))
    return jnp.where(value <= low, 0.0, jnp.where(value >= high, 1.0, inside))


@dataclasses.dataclass(frozen=True)
class IntervalLogitNormalMixture(LogitNormalMixture):
    r"""``x = l + (u - l) σ(z)``, ``z ~ Σ_k w_k N(μ_k, σ_k²)``, on a sub-interval ``(l, u)`` of ``(low, high)``.

    Raw parameters ``[l, u, θ…]`` with ``θ`` as ``GaussianMixture(components)``'s (of ``z``) and
    ``low ≤ l < u ≤ high``: a ``LogitNormalMixture`` whose interval a net sets per position
    (``CrystalTransformer`` gives the angle ``γ`` the interval where ``α, β, γ`` describe a cell).
    The density is exactly normalised on ``(l, u)`` and ``-inf`` outside it. A value enters a net
    as ``logit`` on the fixed ``(low, high)``, so its features do not depend on the interval.

    Example:
        >>> import jax.numpy as jnp
        >>> family = IntervalLogitNormalMixture(1, low=0.0, high=180.0)
        >>> params = jnp.array([30.0, 150.0, 0.0, 0.0, 0.5413])   # γ in (30°, 150°), median 90°
        >>> round(float(family.cdf(params, jnp.float32(90.0))), 4)
        0.5
        >>> float(family.log_prob(params, jnp.float32(20.0)))
        -inf
    """

    name = "IntervalLogitNormalMixture"

    @property
    def num_params(self) -> int:
        return 2 + self._normal.num_params

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        return _log_prob(self._normal, params[2:], value, params[0], params[1])

    def draw(self, params: Float[Array, " P"], u: Float[Array, " 2"]) -> Float[Array, ""]:
        return params[0] + (params[1] - params[0]) * jax.nn.sigmoid(self._normal.draw(params[2:], u))

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        return _cdf(self._normal, params[2:], value, params[0], params[1])

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.TransformedDistribution:
        low, high = params[..., 0], params[..., 1]
        return dist.TransformedDistribution(
            self._normal.to_numpyro(params[..., 2:]), [SigmoidTransform(), AffineTransform(low, high - low)]
        )

    def init_bias(self) -> np.ndarray:
        return np.concatenate([[self.low, self.high], self._normal.init_bias()])


@dataclasses.dataclass(frozen=True)
class TruncatedLogNormalMixture(Family):
    r"""``p(x) = Σ_k w_k LogNormal(x; μ_k, σ_k²) 1[x ≥ L] / Z`` with ``Z = Σ_k w_k P_k(X ≥ L)``.

    Raw parameters ``[ln L, θ…]`` with ``θ`` as ``LogNormalMixture(components)``'s: the first is
    the log of the lower bound (``-inf`` or a very negative number: no bound). The normaliser is
    closed-form (normal tail functions of ``ln L``), so the density is exact; ``sample`` picks a
    component with the truncated weights ``w_k P_k(X ≥ L) / Z`` and inverts that component's
    truncated CDF, so it draws exactly from ``p`` (a bound so far in a component's tail that the
    tail underflows returns ``L`` itself). A value enters a net as ``ln x``.

    Example:
        >>> import jax.numpy as jnp
        >>> family = TruncatedLogNormalMixture(1)
        >>> params = jnp.array([0.0, 0.0, 0.0, 0.5397])      # L = 1 = the median of LogNormal(0, 1)
        >>> float(family.log_prob(params, jnp.float32(0.9)))
        -inf
        >>> round(float(family.cdf(params, jnp.float32(jnp.e))), 4)   # (Φ(1) - ½) / ½
        0.6827
        >>> float(family.sample(params, jnp.array([0.3, 0.999]))) >= 1.0
        True
    """

    components: int = 1
    scale_floor: float = 1e-3
    name = "TruncatedLogNormalMixture"

    def __post_init__(self):
        object.__setattr__(self, "components", self._base.components)

    @property
    def _base(self) -> LogNormalMixture:
        return LogNormalMixture(self.components, self.scale_floor)

    @property
    def num_params(self) -> int:
        return 1 + self._base.num_params

    @property
    def num_features(self) -> int:
        return 1

    @property
    def num_uniforms(self) -> int:
        return 2

    @property
    def support(self) -> constraints.Constraint:
        return constraints.positive

    def _truncated(self, params: Float[Array, " P"]):
        log_lower = params[0]
        log_w, loc, scale = self._base.unpack(params[1:])
        log_tail = log_ndtr((loc - log_lower) / scale)  # ln P_k(X >= L)
        return log_lower, log_w, loc, scale, log_tail, jax.nn.logsumexp(log_w + log_tail)

    def log_prob(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        log_lower, *_, log_z = self._truncated(params)
        positive = value > 0
        inside = positive & (jnp.log(jnp.where(positive, value, 1.0)) >= log_lower)
        return jnp.where(inside, self._base.log_prob(params[1:], value) - log_z, -jnp.inf)

    def draw(self, params: Float[Array, " P"], u: Float[Array, " 2"]) -> Float[Array, ""]:
        log_lower, log_w, loc, scale, log_tail, _ = self._truncated(params)
        k = pick_component(log_w + log_tail, u[0])
        upper = (1 - midpoint_uniform(u[1])) * jnp.exp(log_tail[k])  # P_k(X > x) of the drawn x
        log_x = loc[k] - scale[k] * ndtri(upper)
        log_x = jnp.where(jnp.isfinite(log_x), jnp.maximum(log_x, log_lower), log_lower)
        return jnp.exp(log_x)

    def cdf(self, params: Float[Array, " P"], value: Float[Array, ""]) -> Float[Array, ""]:
        log_lower, log_w, loc, scale, _, log_z = self._truncated(params)
        positive = value > 0
        log_x = jnp.maximum(jnp.log(jnp.where(positive, value, 1.0)), log_lower)
        survival = jnp.exp(jax.nn.logsumexp(log_w + log_ndtr((loc - log_x) / scale)) - log_z)
        below = ~positive | (jnp.log(jnp.where(positive, value, 1.0)) < log_lower)
        return jnp.where(below, 0.0, jnp.clip(1 - survival, 0.0, 1.0))

    def features(self, value: Float[Array, ""]) -> Float[Array, " 1"]:
        return self._base.features(value)

    def to_numpyro(self, params: Float[Array, "... P"]) -> dist.MixtureSameFamily:
        """A mixture of ``exp`` of truncated normals, weighted by their retained mass."""
        log_lower = params[..., :1]
        log_w, loc, scale = self._base.unpack(params[..., 1:])
        log_tail = log_ndtr((loc - log_lower) / scale)
        truncated = dist.TruncatedNormal(loc, scale, low=jnp.broadcast_to(log_lower, loc.shape))
        return dist.MixtureSameFamily(
            dist.Categorical(logits=log_w + log_tail), dist.TransformedDistribution(truncated, ExpTransform())
        )

    def init_bias(self) -> np.ndarray:
        return np.concatenate([[-30.0], self._base.init_bias()])

    def feasible_value(self) -> float:
        return 1.0
