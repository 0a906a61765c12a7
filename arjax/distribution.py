"""``Autoregressive``: a NumPyro distribution over token sequences defined by an autoregressive net."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro.distributions import constraints
from numpyro.distributions.distribution import Distribution

from arjax.allowed import Allowed, AllowedTable, allows_dead_ends, check_allowed, masked_log_softmax
from arjax.sampling import check_sample_shape, sample, sample_and_log_prob, split_context
from arjax.testing import all_sequences

__all__ = ["Autoregressive"]


class Autoregressive(Distribution):
    r"""Exact distribution ``p(x) = Π_i p(x_i | x_{<i}, context)`` over ``{0..K-1}^N``.

    ``net(x, context) -> [N, K]`` gives the logits of every position, row ``i`` reading only
    ``x[:i]``. ``log_prob`` is exact and normalised; ``sample`` draws exact independent sequences.

    Args:
        net: an autoregressive network, e.g. ``arjax.nn.MADE``.
        context: optional conditioning input of shape ``batch_shape + net.context_shape``; its
            leading dimensions become the distribution's ``batch_shape``.
        allowed: optional ``Bool[N, K]`` table or rule ``allowed(x, i) -> Bool[K]`` that reads
            only ``x[:i]``; disallowed tokens get probability exactly 0.
        validate_args: as in NumPyro; when true, tokens outside ``0..K-1`` raise an error instead
            of getting ``log_prob = -inf``.

    Behaves like ``numpyro.distributions.Categorical(...).to_event(1)``: ``event_shape == (N,)``,
    integer support, ``expand``, ``mask``, plates and ``jax.jit``/``vmap``/``grad`` all work. It is
    not reparameterisable (``has_rsample`` is ``False``) and does not advertise enumeration, since
    its support has ``K**N`` elements.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=6, num_categories=3, key=jax.random.key(0))
        >>> p = Autoregressive(net)
        >>> x = p.sample(jax.random.key(1), (4,))
        >>> x.shape, p.log_prob(x).shape
        ((4, 6), (4,))
    """

    arg_constraints = {}
    pytree_data_fields = ("net", "context", "_allowed_table")
    pytree_aux_fields = ("_allowed_rule",)
    has_enumerate_support = False

    def __init__(
        self,
        net: eqx.Module,
        context: Float[Array, "..."] | None = None,
        allowed: Allowed = None,
        *,
        validate_args: bool | None = None,
    ):
        _check_net(net)
        self.net = net
        self.context, batch_shape = split_context(net, context)
        rule = check_allowed(allowed, net.num_positions, net.num_categories)
        self._allowed_table = rule if isinstance(rule, AllowedTable) else None
        self._allowed_rule = None if isinstance(rule, AllowedTable) else rule
        super().__init__(batch_shape=batch_shape, event_shape=(net.num_positions,), validate_args=validate_args)

    @property
    def num_positions(self) -> int:
        return self.net.num_positions

    @property
    def num_categories(self) -> int:
        return self.net.num_categories

    @property
    def allowed(self):
        """The allowed-token rule (``AllowedTable`` or the user's callable), or ``None``."""
        return self._allowed_table if self._allowed_table is not None else self._allowed_rule

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_categories - 1), 1)

    @property
    def has_rsample(self) -> bool:
        return False

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Int[Array, "..."]:
        """Exact samples of shape ``sample_shape + batch_shape + (N,)``, dtype int32."""
        return sample(self.net, key, check_sample_shape(sample_shape), context=self.context, allowed=self.allowed)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()
    ) -> tuple[Int[Array, "..."], Float[Array, "..."]]:
        """Samples and their exact log-probabilities from one pass over the positions."""
        return sample_and_log_prob(
            self.net, key, check_sample_shape(sample_shape), context=self.context, allowed=self.allowed
        )

    def sample_with_intermediates(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()):
        """NumPyro hook: the log-probabilities ride along as intermediates of the sample site."""
        x, log_prob = self.sample_and_log_prob(key, sample_shape)
        return x, [log_prob]

    def log_prob(self, value: Int[Array, "... N"], intermediates=None) -> Float[Array, "..."]:
        """Exact ``ln p(value)``; ``-inf`` for tokens outside ``0..K-1`` or disallowed tokens."""
        if intermediates:
            return intermediates[0]
        value = self._check_value(value)
        in_range = (value >= 0) & (value < self.num_categories)
        safe = jnp.where(in_range, value, 0)
        picked = jnp.take_along_axis(self._conditional_log_probs(safe), safe[..., None], axis=-1)[..., 0]
        return jnp.where(jnp.all(in_range, axis=-1), jnp.sum(picked, axis=-1), -jnp.inf)

    def conditional_log_probs(self, value: Int[Array, "... N"]) -> Float[Array, "... N K"]:
        """Normalised ``ln p(x_i = k | x_{<i})`` for every position: shape ``[..., N, K]``."""
        return self._conditional_log_probs(self._check_value(value))

    def _conditional_log_probs(self, value: Int[Array, "... N"]) -> Float[Array, "... N K"]:
        shape = jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
        size = math.prod(shape)
        flat_x = jnp.broadcast_to(value, shape + self.event_shape).reshape((size,) + self.event_shape)
        flat_x = jnp.clip(flat_x, 0, self.num_categories - 1)
        flat_c = None
        if self.context is not None:
            context_shape = tuple(self.net.context_shape)
            flat_c = jnp.broadcast_to(self.context, shape + context_shape).reshape((size,) + context_shape)
        out = _batched_conditionals(self.net, flat_x, flat_c, self.allowed)
        return out.reshape(shape + (self.num_positions, self.num_categories))

    def enumerate_support(self, expand: bool = True) -> Int[Array, "..."]:
        """All ``K**N`` sequences, shape ``(K**N,) + batch_shape + (N,)`` (for ``K**N ≤ 2**16``).

        Not used by NumPyro's inference (``has_enumerate_support`` is ``False``); it is here for
        exact checks on small models.
        """
        grid = all_sequences(self.num_positions, self.num_categories)
        count = grid.shape[0]
        values = grid.reshape((count,) + (1,) * len(self.batch_shape) + self.event_shape)
        if expand:
            values = jnp.broadcast_to(values, (count,) + self.batch_shape + self.event_shape)
        return values

    def to_distrax(self):
        """The same distribution as a ``distrax.Distribution`` (same samples for the same key)."""
        from arjax.distrax_view import AutoregressiveDistrax

        return AutoregressiveDistrax(self.net, context=self.context, allowed=self.allowed)

    def _check_value(self, value) -> Int[Array, "..."]:
        value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.integer):
            raise TypeError(f"value must hold integer tokens in 0..{self.num_categories - 1}, got dtype {value.dtype}")
        if value.ndim < 1 or value.shape[-1] != self.num_positions:
            raise ValueError(f"value must have shape (..., {self.num_positions}), got shape {value.shape}")
        try:
            jnp.broadcast_shapes(value.shape[:-1], self.batch_shape)
        except ValueError:
            raise ValueError(
                f"value's batch dimensions {value.shape[:-1]} do not broadcast with batch_shape {self.batch_shape}"
            ) from None
        if self._validate_args:
            value = _check_token_range(value, self.num_categories)
        return value


@eqx.filter_jit
def _batched_conditionals(net, x, context, rule) -> Float[Array, "B N K"]:
    if context is None:
        return jax.vmap(lambda v: _conditionals(net, v, None, rule))(x)
    return jax.vmap(lambda v, c: _conditionals(net, v, c, rule))(x, context)


def _conditionals(net, x, context, rule) -> Float[Array, "N K"]:
    logits = net(x, context)
    if rule is None:
        return masked_log_softmax(logits, None)
    rows = jax.vmap(lambda i: rule(x, i))(jnp.arange(x.shape[0]))
    return masked_log_softmax(logits, rows, dead_ends=allows_dead_ends(rule))


def _check_token_range(value, num_categories: int):
    bad = (value < 0) | (value >= num_categories)
    message = f"value holds tokens outside 0..{num_categories - 1} (validate_args=True)"
    try:
        bad_now = np.asarray(bad)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return eqx.error_if(value, jnp.any(bad), message)
    if bad_now.any():
        raise ValueError(f"{message}; found {np.unique(np.asarray(value)[bad_now]).tolist()}")
    return value


def _check_net(net) -> None:
    for name in ("num_positions", "num_categories"):
        value = getattr(net, name, None)
        if not isinstance(value, int) or value < 1:
            raise TypeError(
                f"net must be an autoregressive net with a positive int attribute {name!r} "
                f"(e.g. arjax.nn.MADE), got {type(net).__name__} with {name}={value!r}"
            )
    if not callable(net):
        raise TypeError(f"net must be callable as net(x, context) -> logits, got {type(net).__name__}")
