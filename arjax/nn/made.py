"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015) over categories."""

import functools
from collections.abc import Callable

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
        self.num_positions = num_positions
        self.families = resolve_families(num_positions, num_categories, families)
        self.num_categories = layout_of(self.families).num_categories
        self.width = width
        self.depth = depth
        self.residual = residual
        self.activation = activation
        self.context_shape = None if context_size is None else (context_size,)
        dtype = jnp.result_type(float) if dtype is None else dtype

        masks = self._masks()
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
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer):
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

    def init_cache(self, context: Float[Array, " C"] | None = None) -> dict:
        """Fast-path state: what the first layer has read so far, and every hidden layer's activations.

        A hidden unit of degree ``d`` reads only ``x[:d]``, so it is final as soon as ``x[d-1]``
        is known and never changes afterwards. Each ``decode_step(cache, i, token)`` computes only
        the hidden units of degree ``i`` in every layer and the ``K - 1`` output rows of position
        ``i``, which read units of degree ``≤ i``. Sampling all ``N`` positions therefore costs
        about one full forward pass instead of ``N``.

        Tokens (with hidden layers): the cache holds the indicators of the tokens read so far
        (``[N(K-1)]``, against category 0), from which the first layer's units of degree ``i``
        are computed directly, and the output logits accumulated so far: the last layer's units
        of degree ``i`` are pushed into the logits of every later position as soon as they are
        computed. A step so reads the ``N(K-1)`` indicators, one hidden layer and the logits,
        rather than rewriting the first layer's pre-activation and reading the last hidden layer.
        Families (or ``depth=0``): the first layer's pre-activation is kept and updated by the
        weight column of each new input (linear in the features).

        The cache also holds the masked weights in the form the steps read them (for tokens, the
        first layer's columns against category 0 and the output rows as differences to category
        0, both stored unit by unit so a step reads its units' weights as contiguous rows):
        computed once per sampling pass instead of once per step, and shared, unbatched, by every
        sequence of a ``vmap``.
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
        hidden = [jnp.zeros(self.width, first.dtype) for _ in range(self.depth)]
        if self.num_categories is None:
            return {"first": first, "first_deltas": columns, "hidden": hidden, "layer_weights": masked[1:-1],
                    "output_weights": output_weights, "output_bias": output_bias}  # fmt: skip
        return {"first": first, "first_columns": columns.T, "inputs": jnp.zeros(columns.shape[0], first.dtype),
                "hidden": hidden, "layer_weights": masked[1:-1], "output_columns": output_weights.T,
                "logits": output_bias}  # fmt: skip

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
        units = self._units_of_degree(i)
        first = _rows(cache["first"], units) + _rows(cache["first_columns"], units) @ inputs
        hidden = self._decode_hidden(cache, i, units, first)
        pushed = cache["logits"] + _rows(hidden[-1], units) @ _rows(cache["output_columns"], units)
        logits = jax.lax.dynamic_slice_in_dim(pushed, i * (k - 1), k - 1)
        logits = jnp.concatenate([jnp.zeros(1, logits.dtype), logits])
        return logits, {**cache, "inputs": inputs, "hidden": hidden, "logits": pushed}

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
        period = max(self.num_positions - 1, 1)
        units = (i - 1) + period * jnp.arange(-(-self.width // period))
        return jnp.where((i >= 1) & (units < self.width), units, self.width)

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

    def _masks(self) -> list[np.ndarray]:
        if self.num_categories is None:
            layout = self._layout
            d_in = _degrees(layout.feature_counts)
            d_out = _degrees(layout.param_counts)
        else:
            d_in = tuple(input_degrees(self.num_positions, self.num_categories).tolist())
            d_out = d_in
        d_hidden = tuple(hidden_degrees(self.num_positions, self.width).tolist())
        masks = []
        previous = d_in
        for _ in range(self.depth):
            masks.append(made_mask(previous, d_hidden, strict=False))
            previous = d_hidden
        masks.append(made_mask(previous, d_out, strict=True))
        return masks


@functools.lru_cache(maxsize=64)
def _degrees_of(counts: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(np.repeat(np.arange(1, len(counts) + 1), counts).tolist())


def _degrees(counts: np.ndarray) -> tuple[int, ...]:
    """Degrees of ragged per-position units: ``counts[j]`` units of degree ``j + 1``."""
    return _degrees_of(tuple(int(c) for c in counts))


def _rows(array: Array, indices: Int[Array, " c"]) -> Array:
    return jnp.take(array, indices, axis=0, mode="fill", fill_value=0)


def _against_category_zero(rows: Float[Array, "NK ..."], k: int) -> tuple[Array, Float[Array, "NK-N ..."]]:
    """Rows indexed by (position, category) as the sum of the category-0 rows and the ``N(K-1)`` differences to them."""
    grouped = rows.reshape(-1, k, *rows.shape[1:])
    return grouped[:, 0].sum(0), (grouped[:, 1:] - grouped[:, :1]).reshape(-1, *rows.shape[1:])


def _with_zero_column(differences: Float[Array, " N(K-1)"], n: int) -> Float[Array, "N K"]:
    rest = differences.reshape(n, -1)
    return jnp.concatenate([jnp.zeros((n, 1), rest.dtype), rest], axis=1)
