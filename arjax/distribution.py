"""``Autoregressive``: a NumPyro distribution over sequences defined by an autoregressive net."""

import copy
import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.distributions import constraints
from numpyro.distributions.batch_util import _default_vmap_over, promote_batch_shape, vmap_over
from numpyro.distributions.distribution import Distribution

from arjax.allowed import Allowed, AllowedTable, allows_dead_ends, check_allowed, masked_log_softmax
from arjax.families.layout import FamilyLayout, net_layout
from arjax.sampling import check_sample_shape, sample, sample_and_log_prob, split_context
from arjax.testing import all_sequences

__all__ = ["Autoregressive"]


class Autoregressive(Distribution):
    r"""Exact distribution ``p(x) = Π_i p(x_i | x_{<i}, context)`` over sequences of ``N`` positions.

    ``net(x, context) -> [N, P]`` gives every position's conditional parameters, row ``i`` reading
    only ``x[:i]``. Position ``i`` follows the net's family ``net.families[i]`` (token nets built
    with ``num_categories=K``: ``Categorical(K)`` everywhere, logits ``[N, K]``). ``log_prob`` is
    exact and normalised; ``sample`` draws exact independent sequences.

    Values: token sequences are int32 with support ``{0..K-1}^N``; sequences with real, circular
    or positive positions are float arrays (tokens stored as exact integers) with support
    ``real_vector``, ``independent(positive, 1)``, … or, for a mix, NumPyro's
    ``independent(cat([...]), 1)`` of the positions' constraints. ``log_prob`` is differentiable
    in the continuous values (NUTS).

    Args:
        net: an autoregressive network, e.g. ``arjax.nn.MADE``.
        context: optional conditioning input of shape ``batch_shape + net.context_shape``; its
            leading dimensions become the distribution's ``batch_shape``.
        allowed: optional ``Bool[N, K]`` table or rule ``allowed(x, i) -> Bool[K]`` that reads
            only ``x[:i]``; disallowed tokens get probability exactly 0 (token positions only).
        validate_args: as in NumPyro: a NaN or infinite ``context`` raises; ``log_prob`` of values
            outside the support warns (when not traced) and is ``-inf`` (as it is without validation).

    Behaves like ``numpyro.distributions.Categorical(...).to_event(1)``: ``event_shape == (N,)``,
    ``expand``, ``mask``, plates, ``numpyro.contrib.control_flow.scan``, ``vmap_over`` and
    ``jax.jit``/``vmap``/``grad`` all work. With tokens it is not reparameterisable
    (``has_rsample`` is ``False``; use a score-function ELBO); with only real, circular or
    positive positions it is (implicit reparameterisation), so ``Trace_ELBO`` trains it as a
    guide. It does not advertise enumeration (its support has ``K**N`` elements). Leading
    axes that NumPyro's ``scan`` (or a ``jax.vmap`` with ``vmap_over``) stacks onto the net's arrays
    become batch axes (``promote_batch_shape``); each slice is evaluated with its own copy of the net.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=6, num_categories=3, key=jax.random.key(0))
        >>> p = Autoregressive(net)
        >>> x = p.sample(jax.random.key(1), (4,))
        >>> x.shape, p.log_prob(x).shape
        ((4, 6), (4,))
    """

    arg_constraints = {"context": constraints.real}
    pytree_data_fields = ("net", "context", "_allowed_table")
    pytree_aux_fields = ("_allowed_rule", "_net_ndims", "_context_ndim", "_batch_ndim")
    has_enumerate_support = False

    def __init__(
        self,
        net: eqx.Module,
        context: Float[Array, "..."] | None = None,
        allowed: Allowed = None,
        *,
        validate_args: bool | None = None,
    ):
        layout = check_net(net)
        self.net = net
        self.context, batch_shape = split_context(net, context)
        self._net_ndims = tuple(leaf.ndim for leaf in _array_leaves(net))
        self._context_ndim = None if self.context is None else self.context.ndim
        self._batch_ndim = len(batch_shape)
        rule = check_allowed(allowed, net.num_positions, layout.categorical_size)
        self._allowed_table = rule if isinstance(rule, AllowedTable) else None
        self._allowed_rule = None if isinstance(rule, AllowedTable) else rule
        super().__init__(batch_shape=batch_shape, event_shape=(net.num_positions,), validate_args=validate_args)

    @property
    def num_positions(self) -> int:
        return self.net.num_positions

    @property
    def num_categories(self) -> int | None:
        """``K`` of a token-only sequence with one vocabulary, else ``None``."""
        return self.layout.num_categories

    @property
    def families(self) -> tuple:
        """Every position's ``arjax.families.Family``."""
        return self.layout.families

    @property
    def layout(self) -> FamilyLayout:
        return net_layout(self.net)

    @property
    def allowed(self):
        """The allowed-token rule (``AllowedTable`` or the user's callable), or ``None``."""
        return self._allowed_table if self._allowed_table is not None else self._allowed_rule

    @constraints.dependent_property(event_dim=1)
    def support(self):
        return self.layout.support

    @property
    def has_rsample(self) -> bool:
        """True when every position is real, circular or positive: samples are differentiable in the net."""
        return self.layout.categorical_size is None

    def sample(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> Array:
        """Exact samples of shape ``sample_shape + batch_shape + (N,)`` (int32 tokens, or floats).

        Reparameterised when ``has_rsample`` (the families' implicit gradients flow to the net and
        context); otherwise the net is read through ``stop_gradient``, since tokens carry no gradient.
        """
        if self._stacked_shape or self.has_rsample:
            return self.sample_and_log_prob(key, sample_shape)[0]
        return sample(self.net, key, check_sample_shape(sample_shape), context=self.context, allowed=self.allowed)

    def sample_and_log_prob(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> tuple[Array, Array]:
        """Samples and their exact log-probabilities from one pass over the positions."""
        sample_shape = check_sample_shape(sample_shape)
        if not self._stacked_shape:
            return sample_and_log_prob(self.net, key, sample_shape, context=self.context, allowed=self.allowed)
        stacked = self._stacked_shape
        keys = jax.random.split(key, math.prod(stacked))

        def one(net, context, table, key):
            return sample_and_log_prob(net, key, sample_shape, context=context, allowed=self._rule(table))

        x, log_prob = jax.vmap(one)(*self._flat_slices(stacked), keys)
        return _stacked_after_sample_axes(x, stacked, len(sample_shape)), _stacked_after_sample_axes(
            log_prob, stacked, len(sample_shape)
        )

    def sample_with_intermediates(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()):
        """NumPyro hook: the log-probabilities ride along as intermediates of the sample site."""
        x, log_prob = self.sample_and_log_prob(key, sample_shape)
        return x, [log_prob]

    def log_prob(self, value: Array, intermediates=None) -> Float[Array, "..."]:
        """Exact ``ln p(value)``; ``-inf`` for values outside the support or disallowed tokens.

        With validation on, out-of-support values also warn (NumPyro's rule; not under ``jit``).
        """
        if intermediates:
            return intermediates[0]
        value = self._check_value(value)
        if self._validate_args:
            self._validate_sample(value)
        return self._map_slices(_log_prob, value)

    def position_log_probs(self, value: Array) -> Float[Array, "... N"]:
        """``ln p(x_i | x_{<i})`` of every position (their sum is ``log_prob``; ``-inf`` rows outside the support).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from arjax.nn import MeanField
            >>> p = Autoregressive(MeanField(num_positions=3, num_categories=2, init_scale=0.0, key=jax.random.key(0)))
            >>> [round(float(v), 4) for v in p.position_log_probs(jnp.array([0, 1, 1]))]
            [-0.6931, -0.6931, -0.6931]
        """
        return self._map_slices(_position_log_probs, self._check_value(value))

    def conditional_params(self, value: Array) -> Float[Array, "... N P"]:
        """Every position's raw conditional parameters (the net's output rows) given ``value``'s prefix."""
        return self._map_slices(_conditional_params, self._check_value(value))

    def conditional_log_probs(self, value: Array) -> Float[Array, "... N K"]:
        """Normalised ``ln p(x_i = k | x_{<i})`` for every position of a token sequence: ``[..., N, K]``."""
        if self.num_categories is None:
            raise ValueError("conditional_log_probs needs a token-only sequence with one vocabulary; use "
                             "conditional_params or conditional_distribution")  # fmt: skip
        return self._map_slices(_conditional_log_probs, self._check_value(value))

    def conditional_cdfs(self, value: Array) -> Float[Array, "... N"]:
        """``F_i(x_i | x_{<i})`` of every position: the Rosenblatt transform (i.i.d. uniform for exact samples of a
        continuous sequence)."""
        return self._map_slices(_conditional_cdfs, self._check_value(value))

    def conditional_distribution(self, value: Array, position: int):
        """``p(x_position | value's prefix)`` as a NumPyro distribution (e.g. ``MixtureSameFamily``).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from arjax.families import GaussianMixture
            >>> from arjax.nn import MADE
            >>> p = Autoregressive(MADE(num_positions=3, families=GaussianMixture(2), key=jax.random.key(0)))
            >>> type(p.conditional_distribution(jnp.zeros(3), 1)).__name__
            'MixtureSameFamily'
        """
        if not isinstance(position, int) or not 0 <= position < self.num_positions:
            raise ValueError(f"position must be an int in 0..{self.num_positions - 1}, got {position!r}")
        family = self.families[position]
        params = self.conditional_params(value)[..., position, : family.num_params]
        if self.allowed is not None and family.is_discrete:
            rows = self._map_slices(_allowed_rows, self._check_value(value))[..., position, : family.num_categories]
            return family.to_numpyro(params, rows)
        return family.to_numpyro(params)

    def enumerate_support(self, expand: bool = True) -> Array:
        """All ``K**N`` sequences, shape ``(K**N,) + batch_shape + (N,)`` (for ``K**N ≤ 2**16``).

        Not used by NumPyro's inference (``has_enumerate_support`` is ``False``); it is here for
        exact checks on small token models.
        """
        if self.num_categories is None:
            raise ValueError("enumerate_support needs a token-only sequence with one vocabulary")
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

    def _check_value(self, value) -> Array:
        value = jnp.asarray(value)
        if not (jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
                or value.dtype == jnp.bool_):  # fmt: skip
            raise TypeError(f"value must hold real numbers or integer tokens, got dtype {value.dtype}")
        if value.ndim < 1 or value.shape[-1] != self.num_positions:
            raise ValueError(f"value must have shape (..., {self.num_positions}), got shape {value.shape}")
        try:
            jnp.broadcast_shapes(value.shape[:-1], self._full_batch_shape)
        except ValueError:
            raise ValueError(
                f"value's batch dimensions {value.shape[:-1]} do not broadcast with batch_shape "
                f"{self._full_batch_shape}"
            ) from None
        return value

    # Stacked nets: leading axes that a transformation (scan, vmap) put on the net's arrays.

    @property
    def _stacked_shape(self) -> tuple[int, ...]:
        leaves = _array_leaves(self.net)
        if not leaves or not self._net_ndims:
            return ()
        extra = leaves[0].ndim - self._net_ndims[0]
        return tuple(leaves[0].shape[:extra])

    @property
    def _full_batch_shape(self) -> tuple[int, ...]:
        """The stacked axes followed by the batch axes the distribution was built with."""
        unstacked = self._batch_shape[len(self._batch_shape) - self._batch_ndim :] if self._batch_ndim else ()
        return self._stacked_shape + unstacked

    def _rule(self, table):
        return table if table is not None else self._allowed_rule

    def _flat_slices(self, stacked: tuple[int, ...]):
        """Net, context and table with the stacked axes broadcast to ``stacked`` and flattened into one axis."""
        size, e = math.prod(stacked), len(stacked)

        def flatten(leaf, ndim):
            leaf = jnp.broadcast_to(leaf, stacked + leaf.shape[leaf.ndim - ndim :])
            return leaf.reshape((size,) + leaf.shape[e:])

        arrays, static = eqx.partition(self.net, eqx.is_array)
        arrays = jax.tree.map(flatten, arrays, jax.tree.unflatten(jax.tree.structure(arrays), self._net_ndims))
        context = None
        if self.context is not None:
            full = stacked + self._full_batch_shape[e:] + tuple(self.net.context_shape)
            context = jnp.broadcast_to(self.context, full).reshape((size,) + full[e:])
        table = self._allowed_table
        if table is not None:
            table = AllowedTable(flatten(table.table, 2))
        return eqx.combine(arrays, static), context, table

    def _map_slices(self, fn, value):
        """``fn(net, context, rule, value)`` for an unstacked net, mapped over the stacked axes if any."""
        if not self._stacked_shape:
            return fn(self.net, self.context, self.allowed, value)
        batch_shape = self._full_batch_shape
        full = jnp.broadcast_shapes(value.shape[:-1], batch_shape)
        s, e = len(full) - len(batch_shape), len(self._stacked_shape)
        stacked = full[s : s + e]
        value = jnp.broadcast_to(value, full + value.shape[-1:])
        rest = value.shape[:s] + value.shape[s + e :]
        value = jnp.moveaxis(value, tuple(range(s, s + e)), tuple(range(e))).reshape((-1,) + rest)

        def one(net, context, table, v):
            return fn(net, context, self._rule(table), v)

        return _stacked_after_sample_axes(jax.vmap(one)(*self._flat_slices(stacked), value), stacked, s)


@promote_batch_shape.register
def _promote_autoregressive(d: Autoregressive):
    promoted = copy.copy(d)
    promoted._batch_shape = d._full_batch_shape
    return promoted


@vmap_over.register
def _vmap_over_autoregressive(d: Autoregressive, net=None, context=None):
    return _default_vmap_over(d, net=net, context=context, _allowed_table=None)


def _log_prob(net, context, rule, value) -> Float[Array, "..."]:
    x, c, shape = _flat(net, context, value)
    return _batched_log_prob(net, x, c, rule).reshape(shape)


def _position_log_probs(net, context, rule, value) -> Float[Array, "... N"]:
    x, c, shape = _flat(net, context, value)
    return _batched_position_log_probs(net, x, c, rule).reshape(shape + (net.num_positions,))


def _conditional_params(net, context, rule, value) -> Float[Array, "... N P"]:
    x, c, shape = _flat(net, context, value)
    return _batched_params(net, x, c).reshape(shape + (net.num_positions, -1))


def _conditional_log_probs(net, context, rule, value) -> Float[Array, "... N K"]:
    x, c, shape = _flat(net, context, value)
    return _batched_conditional_log_probs(net, x, c, rule).reshape(shape + (net.num_positions, -1))


def _conditional_cdfs(net, context, rule, value) -> Float[Array, "... N"]:
    x, c, shape = _flat(net, context, value)
    return _batched_cdfs(net, x, c).reshape(shape + (net.num_positions,))


def _allowed_rows(net, context, rule, value) -> Array:
    x, _, shape = _flat(net, context, value)
    safe, _ = _in_support(net_layout(net), x)
    return jax.vmap(lambda v: _rows(rule, v))(safe).reshape(shape + (net.num_positions, -1))


def _flat(net, context, value):
    """``value`` and ``context`` broadcast together and flattened to one batch axis."""
    context_shape = getattr(net, "context_shape", None)
    context_batch = () if context is None else context.shape[: context.ndim - len(context_shape)]
    shape = jnp.broadcast_shapes(value.shape[:-1], context_batch)
    size = math.prod(shape)
    x = jnp.broadcast_to(value, shape + value.shape[-1:]).reshape((size, value.shape[-1]))
    c = None
    if context is not None:
        c = jnp.broadcast_to(context, shape + tuple(context_shape)).reshape((size,) + tuple(context_shape))
    return x, c, shape


def _in_support(layout: FamilyLayout, x):
    """Which positions hold in-support values, and ``x`` with the others replaced by feasible values."""
    ok = layout.in_support(x)
    feasible = jnp.asarray(layout.feasible, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)
    safe = jnp.where(ok, x, feasible).astype(layout.value_dtype)
    return safe, ok


def _rows(rule, x):
    return jax.vmap(lambda i: rule(x, i))(jnp.arange(x.shape[0]))


def _apply(net, x, c):
    return jax.vmap(lambda v: net(v, None))(x) if c is None else jax.vmap(net)(x, c)


@eqx.filter_jit
def _batched_log_prob(net, x, c, rule) -> Float[Array, " B"]:
    return jnp.sum(_batched_position_log_probs(net, x, c, rule), axis=-1)


@eqx.filter_jit
def _batched_position_log_probs(net, x, c, rule) -> Float[Array, "B N"]:
    layout = net_layout(net)
    safe, ok = _in_support(layout, x)
    params = _apply(net, safe, c)
    if rule is None:
        per_position = jax.vmap(layout.log_probs)(params, safe)
    else:
        rows = jax.vmap(lambda v: _rows(rule, v))(safe)
        per_position = jax.vmap(partial(layout.log_probs, dead_ends=allows_dead_ends(rule)))(params, safe, rows)
    return jnp.where(jnp.all(ok, axis=-1, keepdims=True), per_position, -jnp.inf)


@eqx.filter_jit
def _batched_params(net, x, c) -> Float[Array, "B N P"]:
    return _apply(net, _in_support(net_layout(net), x)[0], c)


@eqx.filter_jit
def _batched_conditional_log_probs(net, x, c, rule) -> Float[Array, "B N K"]:
    safe, _ = _in_support(net_layout(net), x)
    logits = _apply(net, safe, c)
    if rule is None:
        return masked_log_softmax(logits, None)
    return masked_log_softmax(logits, jax.vmap(lambda v: _rows(rule, v))(safe), dead_ends=allows_dead_ends(rule))


@eqx.filter_jit
def _batched_cdfs(net, x, c) -> Float[Array, "B N"]:
    layout = net_layout(net)
    safe, _ = _in_support(layout, x)
    return jax.vmap(layout.cdfs)(_apply(net, safe, c), safe)


def _stacked_after_sample_axes(out, stacked, num_sample_axes: int):
    """``(prod(stacked),) + S + rest`` → ``S + stacked + rest``: sample axes lead, as NumPyro orders them."""
    out = out.reshape(stacked + out.shape[1:])
    e = len(stacked)
    return jnp.moveaxis(out, tuple(range(e)), tuple(range(num_sample_axes, num_sample_axes + e)))


def _array_leaves(net) -> list:
    return jax.tree.leaves(eqx.filter(net, eqx.is_array))


def check_net(net, name: str = "net") -> FamilyLayout:
    """The ``FamilyLayout`` of an autoregressive net, or a TypeError naming ``name`` and what it lacks."""
    if not isinstance(getattr(net, "num_positions", None), int) or net.num_positions < 1:
        raise TypeError(
            f"{name} must be an autoregressive net with a positive int attribute 'num_positions' (e.g. "
            f"arjax.nn.MADE), got {type(net).__name__} with num_positions={getattr(net, 'num_positions', None)!r}"
        )
    if getattr(net, "families", None) is None:
        k = getattr(net, "num_categories", None)
        if not isinstance(k, int) or k < 1:
            raise TypeError(
                f"{name} must have a positive int attribute 'num_categories' or a 'families' tuple (e.g. "
                f"arjax.nn.MADE), got {type(net).__name__} with num_categories={k!r}"
            )
    if not callable(net):
        raise TypeError(f"{name} must be callable as net(x, context) -> parameters, got {type(net).__name__}")
    return net_layout(net)
