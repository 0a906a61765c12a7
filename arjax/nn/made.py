"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015) over categories."""

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.families.base import Family
from arjax.families.layout import FamilyLayout, layout_of, resolve_families
from arjax.nn.inputs import as_one_hot, as_values, check_context, check_decode_step, check_int, scaled_normal
from arjax.nn.masks import hidden_degrees, input_degrees, made_mask

__all__ = ["MADE"]

_DECODE_BLOCK = 16


class MADE(eqx.Module):
    r"""Masked dense network: the conditional of position ``i`` depends only on ``x[:i]``.

    Tokens (``num_categories=K``): the input is the one-hot sequence ``[N * K]``; ``depth`` masked
    hidden layers of ``width`` units follow (``depth=0`` is a single masked linear map, i.e.
    autoregressive logistic regression); the masked output layer gives ``[N, K]`` logits,
    relative to category 0. With ``residual=True`` hidden layers after the first add their input
    back (``h + act(W h)``), which keeps the masks valid because all hidden layers share the same
    degrees. An optional context vector (``context_size``) feeds the first hidden layer and the
    output layer unmasked, giving ``p(x | context)`` with every position, the first included,
    conditioned on it.

    Hidden units are stored sorted by degree (``hidden_order="sorted"``, the default), which makes
    every masked weight matrix block lower triangular: the forward pass over tokens multiplies
    only the blocks on and below the diagonal (about 5/8 of the dense FLOPs, forward and backward;
    from ``width=256`` on, below which the dense masked products compile faster and cost little),
    and the sampling fast path reads each step's units as contiguous slices. The weights are drawn
    in the cyclic order of Germain et al. (degrees ``1, 2, …, N-1, 1, 2, …``) and then reordered,
    so a key gives the same function in either order; ``hidden_order="cyclic"`` keeps that order
    (dense masked products), which is what model files written before this option hold.

    Families (``families=`` one ``arjax.families.Family`` or one per position): the input is the
    concatenation of every position's features (one-hot tokens, real values, Fourier features of
    circular values) and the output every position's ``P_i`` raw parameters, returned as rows
    ``[N, P]`` padded with zeros to ``P = max_i P_i``. A depth-0 MADE with ``GaussianMixture(1)``
    is exactly a Gaussian autoregressive model (any multivariate normal, by its Cholesky factor).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = MADE(num_positions=4, num_categories=3, width=16, depth=2, key=jax.random.key(0))
        >>> net(jnp.array([0, 2, 1, 1])).shape
        (4, 3)
        >>> from arjax.families import GaussianMixture
        >>> real = MADE(num_positions=4, families=GaussianMixture(2), key=jax.random.key(0))
        >>> real(jnp.array([0.1, -2.0, 0.3, 1.5])).shape   # 3 parameters per component
        (4, 6)
    """

    weights: list[Array]
    biases: list[Array]
    context_weights: list[Array] | None
    num_positions: int = eqx.field(static=True)
    num_categories: int | None = eqx.field(static=True)
    families: tuple[Family, ...] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    residual: bool = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)
    context_shape: tuple[int, ...] | None = eqx.field(static=True)
    hidden_order: str = eqx.field(static=True)

    def __init__(
        self,
        num_positions: int,
        num_categories: int | None = None,
        *,
        families: Family | tuple[Family, ...] | None = None,
        width: int = 64,
        depth: int = 2,
        residual: bool = False,
        activation: Callable[[Array], Array] = jax.nn.gelu,
        context_size: int | None = None,
        dtype: DTypeLike | None = None,
        hidden_order: str = "sorted",
        key: PRNGKeyArray,
    ):
        check_int("num_positions", num_positions)
        if num_categories is not None:
            check_int("num_categories", num_categories)
        check_int("width", width)
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
        if context_size is not None:
            check_int("context_size", context_size)
        if hidden_order not in ("sorted", "cyclic"):
            raise ValueError(f"hidden_order must be 'sorted' or 'cyclic', got {hidden_order!r}")
        self.num_positions = num_positions
        self.families = resolve_families(num_positions, num_categories, families)
        self.num_categories = layout_of(self.families).num_categories
        self.width = width
        self.depth = depth
        self.residual = residual
        self.activation = activation
        self.context_shape = None if context_size is None else (context_size,)
        self.hidden_order = hidden_order
        dtype = jnp.result_type(float) if dtype is None else dtype

        masks = self._masks(tuple(hidden_degrees(num_positions, width).tolist()))
        scales = [mask / np.sqrt(np.maximum(mask.sum(axis=1, keepdims=True), 1.0)) for mask in masks]
        if context_size is not None:
            fed = (0, depth) if depth else (0,)
            scales += [np.full((masks[layer].shape[0], context_size), 1 / np.sqrt(context_size)) for layer in fed]
        arrays = scaled_normal(key, scales, dtype)
        self.weights = arrays[: len(masks)]
        self.biases = [jnp.asarray(np.zeros(m.shape[0]), dtype) for m in masks]
        if self.num_categories is None:
            self.biases[-1] = jnp.asarray(self._layout.ragged_init_bias, dtype)
        self.context_weights = arrays[len(masks) :] if context_size is not None else None
        if hidden_order == "sorted" and depth:
            self._sort_hidden_units()

    def _sort_hidden_units(self) -> None:
        """Reorder the hidden units by degree (drawn in the cyclic order, so a key gives the same function)."""
        order = np.argsort(hidden_degrees(self.num_positions, self.width), kind="stable")
        weights = [self.weights[0][order]]
        weights += [w[order][:, order] for w in self.weights[1:-1]]
        self.weights = [*weights, self.weights[-1][:, order]]
        if self.context_weights is not None:
            self.context_weights = [self.context_weights[0][order], *self.context_weights[1:]]

    def __call__(
        self, x: Int[Array, " N"] | Float[Array, "N K"] | Float[Array, " N"], context: Float[Array, " C"] | None = None
    ) -> Float[Array, "N P"]:
        """Logits ``[N, K]`` (or family parameters ``[N, P]``) of one sequence; row ``i`` reads only ``x[:i]``.

        The logits are relative to category 0 (``logits[:, 0] == 0``): the output layer computes
        only the ``K - 1`` differences ``ℓ_k - ℓ_0``, which fix the softmax. Integer tokens enter
        the first layer the same way, as the indicators of categories ``1 … K-1`` against a base
        of category 0, so both layers multiply ``N(K-1)`` rows instead of ``NK`` (half for spins).
        A net with other families takes the values ``Float[N]``.
        """
        context = check_context(context, self.context_shape)
        if self.num_categories is None:
            return self._family_params(x, context)
        rows = as_one_hot(x, self.num_positions, self.num_categories, self.weights[0].dtype)
        masked = self._masked_weights()
        tokens = jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)
        if tokens and self.depth and self.hidden_order == "sorted" and self.width >= _BLOCKED_MIN_WIDTH:
            return self._token_logits(rows[:, 1:].reshape(-1), masked, context)
        if tokens:
            base, delta = _against_category_zero(masked[0].T, self.num_categories)
            first = base + delta.T @ rows[:, 1:].reshape(-1)
        else:
            first = masked[0] @ rows.reshape(-1)
        first = first + self.biases[0] + self._context_term(0, context)
        if self.depth == 0:
            logits = first.reshape(self.num_positions, self.num_categories)
            return logits - logits[:, :1]
        weights, bias = self._output_layer(masked[-1], context)
        return _with_zero_column(weights @ self._hidden(first, masked) + bias, self.num_positions)

    def _token_logits(self, indicators: Float[Array, " NK"], masked: list[Array], context) -> Float[Array, "N K"]:
        """The forward pass of tokens that skips the masked-out blocks of the weights.

        With the hidden units sorted by degree every masked weight matrix is block lower
        triangular: the units (or output positions) of the ``g``-th of ``_DEGREE_RANGES`` ranges of
        degrees read only a prefix of the layer below (the inputs, units or positions of the ranges
        up to ``g``). Each layer is one product per range over its prefix, about ``(G + 1) / 2G`` of
        the dense FLOPs, forward and backward.
        """
        units, inputs, positions = _degree_ranges(self._hidden_degrees(), self.num_positions, self.num_categories)
        base, deltas = _against_category_zero(masked[0].T, self.num_categories)
        first = _block_lower_product(deltas.T, indicators, units, inputs)
        h = self.activation(first + base + self.biases[0] + self._context_term(0, context))
        for layer in range(1, self.depth):
            out = self.activation(_block_lower_product(masked[layer], h, units, units) + self.biases[layer])
            h = h + out if self.residual else out
        weights, bias = self._output_layer(masked[-1], context)
        rows = tuple(end * (self.num_categories - 1) for end in positions)
        return _with_zero_column(_block_lower_product(weights, h, rows, units) + bias, self.num_positions)

    def init_cache(self, context: Float[Array, " C"] | None = None) -> dict:
        """Fast-path state: what the first layer has read so far, and every hidden layer's activations.

        A hidden unit of degree ``d`` reads only ``x[:d]``, so it is final as soon as ``x[d-1]``
        is known and never changes afterwards. Each ``decode_step(cache, i, token)`` computes only
        the hidden units of degree ``i`` in every layer and the ``K - 1`` output rows of position
        ``i``, which read units of degree ``≤ i``. Sampling all ``N`` positions therefore costs
        about one full forward pass instead of ``N``.

        Tokens (with hidden layers): positions are taken in blocks of ``_DECODE_BLOCK``. When a
        block starts, one product per layer computes what everything before it contributes to
        the block's hidden units and logits (the first layer's pre-activations from the tokens read
        so far, each later layer's from the previous layer's finished units, the block's logits
        from the last layer's); each step of the block then adds only what its own units and
        token contribute, on vectors of the block's units. A step so never reads or rewrites a
        whole hidden layer, and the products that do run at block starts for the whole batch.
        Hidden units are stored block by block, by degree within a block, so a step's and a
        block's units are contiguous slices. Families (or ``depth=0``): the first layer's
        pre-activation is kept and updated by the weight column of each new input (linear in the
        features).

        The cache also holds the masked weights in the form the steps read them (for tokens,
        against category 0 and in the fast path's order of the units): computed once per sampling
        pass instead of once per step, and shared, unbatched, by every sequence of a ``vmap``.
        """
        context = check_context(context, self.context_shape)
        masked = self._masked_weights()
        if self.num_categories is None:
            first, columns = self.biases[0] + self._context_term(0, context), masked[0].T
        else:
            base, columns = _against_category_zero(masked[0].T, self.num_categories)
            first = base + self.biases[0] + self._context_term(0, context)
        if not self.depth:
            return {"first": first, "first_deltas": columns}
        output_weights, output_bias = self._output_layer(masked[-1], context)
        if self.num_categories is None:
            hidden = [jnp.zeros(self.width, first.dtype) for _ in range(self.depth)]
            return {"first": first, "first_deltas": columns, "hidden": hidden, "layer_weights": masked[1:-1],
                    "output_weights": output_weights, "output_bias": output_bias}  # fmt: skip
        k, layout = self.num_categories, self._decode_layout()
        table, size = jnp.asarray(layout.units), layout.units.shape[0]
        padded = -(-self.num_positions // _DECODE_BLOCK) * _DECODE_BLOCK * (k - 1) - output_bias.shape[0]
        return {
            "inputs": jnp.zeros(columns.shape[0], first.dtype),
            "hidden": [jnp.zeros(size, first.dtype) for _ in range(self.depth)],
            "block_pre": [jnp.zeros(layout.block_size, first.dtype) for _ in range(self.depth)],
            "block_logits": jnp.zeros(_DECODE_BLOCK * (k - 1), first.dtype),
            "first": _rows(first, table),
            "first_columns": _rows(columns.T, table),
            "layer_weights": [_rows(_rows(w, table).T, table).T for w in masked[1:-1]],
            "layer_biases": [_rows(bias, table) for bias in self.biases[1:-1]],
            "output_columns": jnp.pad(_rows(output_weights.T, table), ((0, 0), (0, padded))),
            "output_bias": jnp.pad(output_bias, (0, padded)),
        }

    def decode_step(self, cache: dict, i: Int[Array, ""], token: Int[Array, ""]) -> tuple[Float[Array, " K"], dict]:
        """Logits of position ``i`` given ``token = x[i-1]`` (ignored at ``i = 0``), relative to category 0.

        A net with other families takes the previous value and returns position ``i``'s padded parameters.
        """
        if self.num_categories is None:
            return self._decode_family_params(cache, i, token)
        i, token = check_decode_step(i, token)
        k = self.num_categories
        column = jnp.maximum(i - 1, 0) * (k - 1) + jnp.maximum(token - 1, 0)
        read = (i > 0) & (token > 0)
        if self.depth == 0:
            update = jnp.take(cache["first_deltas"], column, axis=0)
            first = cache["first"] + jnp.where(read, update, 0)
            logits = jax.lax.dynamic_slice_in_dim(first, i * k, k)
            return logits - logits[0], {**cache, "first": first}
        inputs = cache["inputs"].at[column].add(jnp.where(read, 1, 0).astype(cache["inputs"].dtype))
        layout, slot = self._decode_layout(), i % _DECODE_BLOCK
        start, size, c = i - slot, layout.block_size, layout.units_per_degree
        offset = jnp.asarray(layout.offsets)[i]
        block = (i // _DECODE_BLOCK) * size
        units = block + offset
        valid = jnp.arange(c) < jnp.asarray(layout.counts)[i]
        pre, block_logits = jax.lax.cond(
            slot == 0,
            lambda: self._start_block(cache, start, inputs),
            lambda: self._continue_block(cache, block, jnp.where(read, column, -1)),
        )
        hidden, new = list(cache["hidden"]), None
        for layer in range(self.depth):
            if layer:
                weights = jax.lax.dynamic_slice(cache["layer_weights"][layer - 1], (block, units), (size, c))
                pre[layer] = pre[layer] + weights @ new
            out = self.activation(jax.lax.dynamic_slice_in_dim(pre[layer], offset, c))
            new = jnp.where(valid, out + new if layer and self.residual else out, 0)
            hidden[layer] = jax.lax.dynamic_update_slice_in_dim(hidden[layer], new, units, 0)
        rows = jax.lax.dynamic_slice(cache["output_columns"], (units, start * (k - 1)), (c, _DECODE_BLOCK * (k - 1)))
        block_logits = block_logits + new @ rows
        logits = jax.lax.dynamic_slice_in_dim(block_logits, slot * (k - 1), k - 1)
        logits = jnp.concatenate([jnp.zeros(1, logits.dtype), logits])
        return logits, {**cache, "inputs": inputs, "hidden": hidden, "block_pre": pre, "block_logits": block_logits}

    def _continue_block(self, cache: dict, block: Int[Array, ""], column: Int[Array, ""]) -> tuple[list[Array], Array]:
        """The block's first-layer pre-activations with the token just read (``column``; ``-1`` for none) added."""
        size = self._decode_layout().block_size
        added = jax.lax.dynamic_slice(cache["first_columns"], (block, jnp.maximum(column, 0)), (size, 1))[:, 0]
        first = cache["block_pre"][0] + jnp.where(column >= 0, added, 0)
        return [first, *cache["block_pre"][1:]], cache["block_logits"]

    def _start_block(self, cache: dict, start: Int[Array, ""], inputs: Array) -> tuple[list[Array], Array]:
        """Pre-activations and logits of the block of positions from ``start`` on, from what precedes it.

        One product per layer: the first layer's pre-activations of the block's hidden units from
        every token before ``start``, each later layer's from the previous layer's finished units
        (degree ``< start``; the others are still zero), and the block's logits from the last
        layer's finished units. The steps of the block then add only what the units they compute
        contribute.
        """
        k, size = self.num_categories, self._decode_layout().block_size
        block = (start // _DECODE_BLOCK) * size
        pre = [jax.lax.dynamic_slice_in_dim(cache["first"], block, size)
               + jax.lax.dynamic_slice_in_dim(cache["first_columns"], block, size) @ inputs]  # fmt: skip
        for layer in range(1, self.depth):
            weights = jax.lax.dynamic_slice_in_dim(cache["layer_weights"][layer - 1], block, size)
            bias = jax.lax.dynamic_slice_in_dim(cache["layer_biases"][layer - 1], block, size)
            pre.append(weights @ cache["hidden"][layer - 1] + bias)
        rows, width = start * (k - 1), _DECODE_BLOCK * (k - 1)
        logits = jax.lax.dynamic_slice_in_dim(cache["output_bias"], rows, width) + cache["hidden"][-1] @ (
            jax.lax.dynamic_slice_in_dim(cache["output_columns"], rows, width, axis=1)
        )
        return pre, logits

    def _hidden_degrees(self) -> tuple[int, ...]:
        degrees = hidden_degrees(self.num_positions, self.width)
        return tuple((np.sort(degrees) if self.hidden_order == "sorted" else degrees).tolist())

    def _decode_layout(self) -> "_DecodeLayout":
        return _decode_layout(self._hidden_degrees(), self.num_positions)

    @property
    def _layout(self) -> FamilyLayout:
        return layout_of(self.families)

    def _family_params(self, x, context) -> Float[Array, "N P"]:
        layout, dtype = self._layout, self.weights[0].dtype
        features = layout.features(as_values(x, self.num_positions, dtype), dtype).reshape(-1)[layout.ragged_features]
        masked = self._masked_weights()
        out = masked[0] @ features + self.biases[0] + self._context_term(0, context)
        if self.depth:
            out = masked[-1] @ self._hidden(out, masked) + self.biases[-1] + self._context_term(-1, context)
        return jnp.take(out, layout.param_rows, mode="fill", fill_value=0)

    def _decode_family_params(self, cache: dict, i, value) -> tuple[Float[Array, " P"], dict]:
        layout = self._layout
        i, value = check_decode_step(i, value, self.weights[0].dtype)
        previous = jnp.maximum(i - 1, 0)
        features = layout.feature_at(previous, value, value.dtype)
        columns = _rows(cache["first_deltas"], jnp.asarray(layout.feature_columns)[previous])
        first = cache["first"] + jnp.where(i > 0, features @ columns, 0)
        param_rows = jnp.asarray(layout.param_rows)[i]
        if self.depth == 0:
            return jnp.take(first, param_rows, mode="fill", fill_value=0), {**cache, "first": first}
        units = self._units_of_degree(i)
        hidden = self._decode_hidden(cache, i, units, _rows(first, units))
        params = _rows(cache["output_weights"], param_rows) @ hidden[-1] + _rows(cache["output_bias"], param_rows)
        return params, {**cache, "first": first, "hidden": hidden}

    def _decode_hidden(self, cache: dict, i, units, first) -> list[Array]:
        """The hidden layers with the units of degree ``i`` (final once ``x[i-1]`` is known) filled in,
        from the first layer's pre-activation ``first`` of those ``units``."""
        hidden = list(cache["hidden"])
        hidden[0] = hidden[0].at[units].set(self.activation(first), mode="drop")
        for layer in range(1, self.depth):
            weights = _rows(cache["layer_weights"][layer - 1], units)
            out = self.activation(weights @ hidden[layer - 1] + _rows(self.biases[layer], units))
            if self.residual:
                out = out + _rows(hidden[layer - 1], units)
            hidden[layer] = hidden[layer].at[units].set(out, mode="drop")
        return hidden

    def _units_of_degree(self, i: Int[Array, ""]) -> Int[Array, " c"]:
        """Indices of the hidden units of degree ``i`` (``width`` marks an empty slot)."""
        return jnp.asarray(self._decode_layout().by_degree)[i]

    def _hidden(self, first: Array, masked: list[Array]) -> Array:
        h = self.activation(first)
        for layer in range(1, self.depth):
            out = self.activation(masked[layer] @ h + self.biases[layer])
            h = h + out if self.residual else out
        return h

    def _output_layer(self, masked: Array, context: Array | None) -> tuple[Array, Array]:
        """Output weights ``[N(K-1), width]`` and bias of the logit differences ``ℓ_k - ℓ_0`` (tokens),
        or ``[Σ P_i, width]`` and bias of the family parameters."""
        shift = self.biases[-1] + self._context_term(-1, context)
        if self.num_categories is None:
            return masked, shift
        k = self.num_categories
        return _against_category_zero(masked, k)[1], _against_category_zero(shift, k)[1]

    def _masked_weights(self) -> list[Array]:
        return [w * jnp.asarray(m, w.dtype) for w, m in zip(self.weights, self._masks())]

    def _context_term(self, which: int, context: Array | None):
        if context is None:
            return 0.0
        return self.context_weights[which] @ context

    def _masks(self, d_hidden: tuple[int, ...] | None = None) -> list[np.ndarray]:
        d_hidden = self._hidden_degrees() if d_hidden is None else d_hidden
        if self.num_categories is None:
            layout = self._layout
            d_in = _degrees(layout.feature_counts)
            d_out = _degrees(layout.param_counts)
        else:
            d_in = tuple(input_degrees(self.num_positions, self.num_categories).tolist())
            d_out = d_in
        masks = []
        previous = d_in
        for _ in range(self.depth):
            masks.append(made_mask(previous, d_hidden, strict=False))
            previous = d_hidden
        masks.append(made_mask(previous, d_out, strict=True))
        return masks


_DEGREE_RANGES = 4
_BLOCKED_MIN_WIDTH = 256  # narrower nets take the dense masked products: they compile faster, and their FLOPs are few


@functools.lru_cache(maxsize=64)
def _degree_ranges(degrees: tuple[int, ...], num_positions: int, num_categories: int):
    """Per range of hidden degrees (units sorted by degree): where its units end, where the inputs they
    read end, and where the output positions that read up to its units end."""
    degrees = np.asarray(degrees)
    period = max(num_positions - 1, 1)
    highest = sorted({-(-(g + 1) * period // _DEGREE_RANGES) for g in range(_DEGREE_RANGES)})
    unit_ends = tuple(int(np.searchsorted(degrees, d, side="right")) for d in highest)
    input_ends = tuple(min(d, num_positions) * (num_categories - 1) for d in highest)
    position_ends = tuple(min(d + 1, num_positions) for d in highest)
    return unit_ends, input_ends, position_ends


class _DecodeLayout(NamedTuple):
    """Where the fast path keeps each hidden unit: blocks of ``_DECODE_BLOCK`` degrees, packed by degree.

    ``units[j * block_size + r]`` is the ``r``-th unit of block ``j`` (``width`` fills); degree ``d``'s
    units start at ``offsets[d]`` within its block, ``counts[d]`` of them (at most
    ``units_per_degree``, the width of a step's slice; blocks are padded so a slice never leaves its
    block). ``by_degree[d]`` lists degree ``d``'s units.
    """

    units: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    block_size: int
    units_per_degree: int
    by_degree: np.ndarray


@functools.lru_cache(maxsize=64)
def _decode_layout(degrees: tuple[int, ...], num_positions: int) -> _DecodeLayout:
    degrees = np.asarray(degrees)
    steps = -(-num_positions // _DECODE_BLOCK) * _DECODE_BLOCK
    members = [np.flatnonzero(degrees == d) if 1 <= d < num_positions else np.zeros(0, int) for d in range(steps)]
    counts = np.array([len(m) for m in members])
    per_degree = max(int(counts.max()), 1)
    blocks = [np.concatenate(members[j : j + _DECODE_BLOCK]) for j in range(0, steps, _DECODE_BLOCK)]
    block_size = max(len(b) for b in blocks) + per_degree
    units = np.full((len(blocks), block_size), len(degrees))
    for j, block in enumerate(blocks):
        units[j, : len(block)] = block
    offsets = np.concatenate([np.cumsum(c) - c for c in counts.reshape(-1, _DECODE_BLOCK)])
    by_degree = np.full((steps, per_degree), len(degrees))
    for d, m in enumerate(members):
        by_degree[d, : len(m)] = m
    return _DecodeLayout(units.reshape(-1), offsets, counts, block_size, per_degree, by_degree)


@functools.lru_cache(maxsize=64)
def _degrees_of(counts: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(np.repeat(np.arange(1, len(counts) + 1), counts).tolist())


def _degrees(counts: np.ndarray) -> tuple[int, ...]:
    """Degrees of ragged per-position units: ``counts[j]`` units of degree ``j + 1``."""
    return _degrees_of(tuple(int(c) for c in counts))


def _block_lower_product(
    matrix: Float[Array, "out in"], x: Float[Array, " in"], out_ends: tuple[int, ...], in_ends: tuple[int, ...]
) -> Float[Array, " out"]:
    """``matrix @ x`` for a block lower triangular ``matrix``: rows up to ``out_ends[g]`` read ``x[:in_ends[g]]``."""
    starts = (0, *out_ends[:-1])
    return jnp.concatenate([matrix[s:e, :p] @ x[:p] for s, e, p in zip(starts, out_ends, in_ends)])


def _rows(array: Array, indices: Int[Array, " c"]) -> Array:
    return jnp.take(array, indices, axis=0, mode="fill", fill_value=0)


def _against_category_zero(rows: Float[Array, "NK ..."], k: int) -> tuple[Array, Float[Array, "NK-N ..."]]:
    """Rows indexed by (position, category) as the sum of the category-0 rows and the ``N(K-1)`` differences to them."""
    grouped = rows.reshape(-1, k, *rows.shape[1:])
    return grouped[:, 0].sum(0), (grouped[:, 1:] - grouped[:, :1]).reshape(-1, *rows.shape[1:])


def _with_zero_column(differences: Float[Array, " N(K-1)"], n: int) -> Float[Array, "N K"]:
    rest = differences.reshape(n, -1)
    return jnp.concatenate([jnp.zeros((n, 1), rest.dtype), rest], axis=1)
