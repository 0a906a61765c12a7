"""Decoder-only causal Transformer with a key/value cache for one-token-at-a-time decoding."""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from arjax.families.base import Family
from arjax.families.layout import FamilyLayout, layout_of, resolve_families
from arjax.nn.inputs import as_one_hot, as_values, check_context, check_decode_step, check_int

__all__ = ["KVCache", "Transformer"]


class KVCache(NamedTuple):
    """Decoding state of a ``Transformer`` for one sequence.

    Attributes:
        keys: attention keys, one ``[num_heads, d_head, N]`` array per layer (transposed, so
            that a query's scores are a plain matrix-vector product); columns at positions not
            yet decoded are zero and masked out. One array per layer, rather than one stacked
            array, lets each step update and read a layer's keys in place.
        values: attention values, one ``[num_heads, N, d_head]`` array per layer.
        context_embedding: the projected context added to every position's input, ``[d_model]``
            (zeros for a net without context).

    Example:
        >>> import jax
        >>> net = Transformer(num_positions=5, num_categories=2, d_model=8, num_heads=2,
        ...                   key=jax.random.key(0))
        >>> [k.shape for k in net.init_cache().keys]
        [(2, 4, 5), (2, 4, 5)]
    """

    keys: tuple[Float[Array, "H E N"], ...]
    values: tuple[Float[Array, "H N E"], ...]
    context_embedding: Float[Array, " D"]


class Transformer(eqx.Module):
    r"""Causal Transformer: logits of position ``i`` depend only on ``x[:i]`` and the context.

    Position ``i`` reads the embedding of ``x[i-1]`` (a learned start embedding at ``i = 0``) plus a
    learned position embedding, then ``num_layers`` pre-LayerNorm blocks of causal multi-head
    self-attention and a GELU MLP (each with a residual connection), a final LayerNorm and a
    linear head to ``K`` logits. Row ``0`` is therefore ``p(x_0 | context)``.

    Context: a net built with ``context_size=C`` takes one ``Float[C]`` context, projects it
    linearly to ``d_model`` and adds it to the input embedding of every position (start token
    included). It costs one small matmul per sequence and lives in the cache as a single vector.

    Decoding: ``init_cache(context)`` and ``decode_step(cache, i, token)`` compute row ``i``
    from the previous token with one query against cached keys/values, so sampling ``N``
    positions costs ``O(N)`` network evaluations of one position instead of ``N`` full passes.

    Families (``families=`` one ``arjax.families.Family`` or one per position, instead of
    ``num_categories``): ``x`` holds values ``Float[N]``; the value of position ``i-1`` enters as
    its features times that family's input rows (``token_embedding`` stacks them: a token's row,
    or one row per feature of a continuous family, each distinct family's rows stored once), and
    each distinct family has its own columns of the linear head (``head_weight``), so row ``i``
    holds position ``i``'s ``P_i`` parameters, padded with zeros to ``P = max_i P_i``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = Transformer(num_positions=6, num_categories=3, d_model=16, num_heads=2,
        ...                   key=jax.random.key(0))
        >>> net(jnp.array([0, 2, 1, 1, 0, 2])).shape
        (6, 3)
    """

    token_embedding: Float[Array, "K D"]
    start_embedding: Float[Array, " D"]
    position_embedding: Float[Array, "N D"]
    context_projection: Float[Array, "C D"] | None
    blocks: list["_Block"]
    final_norm: "_LayerNorm"
    head_weight: Float[Array, "D K"]
    head_bias: Float[Array, " K"]
    num_positions: int = eqx.field(static=True)
    num_categories: int | None = eqx.field(static=True)
    families: tuple[Family, ...] = eqx.field(static=True)
    d_model: int = eqx.field(static=True)
    num_heads: int = eqx.field(static=True)
    num_layers: int = eqx.field(static=True)
    context_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        num_positions: int,
        num_categories: int | None = None,
        *,
        families: Family | tuple[Family, ...] | None = None,
        d_model: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        mlp_ratio: int = 4,
        context_size: int | None = None,
        dtype: DTypeLike | None = None,
        key: PRNGKeyArray,
    ):
        """Build a net with Gaussian-initialised parameters (std 0.02, residual outputs scaled down).

        Args:
            num_positions: sequence length ``N``.
            num_categories: number of token values ``K`` (every position a token).
            families: instead of ``num_categories``, one ``arjax.families.Family`` for every
                position or a sequence of ``N`` of them.
            d_model: width of the residual stream; must be divisible by ``num_heads``.
            num_heads: attention heads per layer, each of width ``d_model // num_heads``.
            num_layers: number of Transformer blocks.
            mlp_ratio: hidden width of each MLP as a multiple of ``d_model``.
            context_size: length ``C`` of a conditioning vector, or ``None`` for no context.
            dtype: parameter dtype (default: float32, or float64 under ``jax_enable_x64``).
            key: a ``jax.random`` key.
        """
        for name, value in [
            ("num_positions", num_positions),
            ("d_model", d_model),
            ("num_heads", num_heads),
            ("num_layers", num_layers),
            ("mlp_ratio", mlp_ratio),
        ]:
            check_int(name, value)
        if d_model % num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}"
            )
        if num_categories is not None:
            check_int("num_categories", num_categories)
        if context_size is not None:
            check_int("context_size", context_size)
        self.num_positions = int(num_positions)
        self.families = resolve_families(self.num_positions, num_categories, families)
        layout = layout_of(self.families)
        self.num_categories = layout.num_categories
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.num_layers = int(num_layers)
        self.context_shape = None if context_size is None else (int(context_size),)
        dtype = jnp.result_type(float) if dtype is None else dtype

        k_tok, k_start, k_pos, k_ctx, k_head, *k_blocks = jax.random.split(key, 5 + num_layers)
        std = 0.02
        num_inputs = sum(f.num_features for f in layout.distinct)
        self.token_embedding = _normal(k_tok, (num_inputs, d_model), std, dtype)
        self.start_embedding = _normal(k_start, (d_model,), std, dtype)
        self.position_embedding = _normal(k_pos, (num_positions, d_model), std, dtype)
        self.context_projection = (
            None
            if context_size is None
            else _normal(k_ctx, (context_size, d_model), std / np.sqrt(context_size), dtype)
        )
        self.blocks = [
            _Block(d_model, num_heads, mlp_ratio * d_model, std / np.sqrt(2 * num_layers), dtype, key=k)
            for k in k_blocks
        ]
        self.final_norm = _LayerNorm(d_model, dtype)
        self.head_weight = _normal(k_head, (d_model, len(layout.shared_init_bias)), std, dtype)
        self.head_bias = jnp.asarray(layout.shared_init_bias, dtype)

    def __call__(
        self, x: Int[Array, " N"] | Float[Array, "N K"] | Float[Array, " N"], context: Float[Array, " C"] | None = None
    ) -> Float[Array, "N P"]:
        """Logits ``[N, K]`` (family parameters ``[N, P]``) of one sequence; row ``i`` reads only ``x[:i]``.

        ``x`` holds integer tokens ``[N]`` or float one-hot (or soft) rows ``[N, K]``; for
        one-hot rows both give the same logits; a net with other families takes values
        ``Float[N]``. Batch with ``jax.vmap``.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> net = Transformer(num_positions=4, num_categories=2, d_model=8, num_heads=2,
            ...                   context_size=3, key=jax.random.key(0))
            >>> net(jnp.array([1, 0, 0, 1]), context=jnp.ones(3)).shape
            (4, 2)
        """
        tokens = self._embed_tokens(x) if self.num_categories is not None else self._embed_values(x)
        h = jnp.concatenate([self.start_embedding[None], tokens[:-1]])
        h = h + self.position_embedding + self._embed_context(context)
        for block in self.blocks:
            q, k, v = block.query_key_value(h)
            h = block.finish(h, _causal_attend(q, k.swapaxes(1, 2), v))
        if self.num_categories is not None:
            return self._head(h)
        return jnp.take_along_axis(self._head(h), jnp.asarray(self._layout.shared_param_columns), axis=1,
                                   mode="fill", fill_value=0)  # fmt: skip

    def init_cache(self, context: Float[Array, " C"] | None = None) -> KVCache:
        """Empty decoding state for one sequence (with its context, if the net takes one).

        Example:
            >>> import jax
            >>> net = Transformer(num_positions=3, num_categories=2, d_model=8, num_heads=2,
            ...                   key=jax.random.key(0))
            >>> [v.shape for v in net.init_cache().values]
            [(2, 3, 4), (2, 3, 4)]
        """
        dtype = self.token_embedding.dtype
        d_head = self.d_model // self.num_heads
        return KVCache(
            keys=tuple(jnp.zeros((self.num_heads, d_head, self.num_positions), dtype) for _ in self.blocks),
            values=tuple(jnp.zeros((self.num_heads, self.num_positions, d_head), dtype) for _ in self.blocks),
            context_embedding=self._embed_context(context),
        )

    def decode_step(
        self, cache: KVCache, i: Int[Array, ""] | int, token: Int[Array, ""] | int
    ) -> tuple[Float[Array, " K"], KVCache]:
        """Logits of position ``i`` given ``token = x[i-1]``, and the cache with position ``i`` added.

        ``i`` may be traced (e.g. the counter of a ``lax.scan``); ``token`` is ignored at ``i = 0``.
        Positions must be decoded in order ``0, 1, ..., N-1``; each step attends from one query
        to the cached keys, and the logits equal row ``i`` of ``net(x)``.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> net = Transformer(num_positions=3, num_categories=2, d_model=8, num_heads=2,
            ...                   key=jax.random.key(0))
            >>> x = jnp.array([1, 0, 1])
            >>> cache = net.init_cache()
            >>> rows = []
            >>> for i, prev in enumerate([0, 1, 0]):
            ...     logits, cache = net.decode_step(cache, i, prev)
            ...     rows.append(logits)
            >>> bool(jnp.allclose(jnp.stack(rows), net(x), atol=1e-5))
            True
        """
        families = self.num_categories is None
        i, token = check_decode_step(i, token, self.token_embedding.dtype if families else None)
        zero = jnp.zeros((), jnp.int32)
        embedded = self._embed_value_at(jnp.maximum(i - 1, 0), token) if families else self.token_embedding[token]
        previous = jnp.where(i == 0, self.start_embedding, embedded)
        position = lax.dynamic_index_in_dim(self.position_embedding, i, keepdims=False)
        h = (previous + position + cache.context_embedding)[None]
        visible = (jnp.arange(self.num_positions) <= i)[None]
        keys, values = [], []
        for block, cached_k, cached_v in zip(self.blocks, cache.keys, cache.values):
            q, k, v = block.query_key_value(h)
            keys.append(lax.dynamic_update_slice(cached_k, k.swapaxes(1, 2).astype(cached_k.dtype), (zero, zero, i)))
            values.append(lax.dynamic_update_slice(cached_v, v.astype(cached_v.dtype), (zero, i, zero)))
            h = block.finish(h, _attend(q, keys[-1], values[-1], visible))
        out = self._head(h)[0]
        if families:
            out = jnp.take(out, jnp.asarray(self._layout.shared_param_columns)[i], mode="fill", fill_value=0)
        return out, cache._replace(keys=tuple(keys), values=tuple(values))

    @property
    def _layout(self) -> FamilyLayout:
        return layout_of(self.families)

    def _embed_values(self, x) -> Float[Array, "N D"]:
        layout, dtype = self._layout, self.token_embedding.dtype
        features = layout.features(as_values(x, self.num_positions, dtype), dtype)
        rows = jnp.take(self.token_embedding, layout.shared_feature_rows, axis=0, mode="fill", fill_value=0)
        return jnp.einsum("nf,nfd->nd", features, rows, precision=lax.Precision.HIGHEST)

    def _embed_value_at(self, j: Int[Array, ""], value) -> Float[Array, " D"]:
        layout, dtype = self._layout, self.token_embedding.dtype
        features = layout.feature_at(j, value, dtype)
        rows = jnp.take(self.token_embedding, jnp.asarray(layout.shared_feature_rows)[j], axis=0, mode="fill",
                        fill_value=0)  # fmt: skip
        return jnp.dot(features, rows, precision=lax.Precision.HIGHEST)

    def _embed_tokens(self, x) -> Float[Array, "N D"]:
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.integer):
            if x.shape != (self.num_positions,):
                raise ValueError(
                    f"x must have shape ({self.num_positions},) (one sequence of tokens; batch "
                    f"with jax.vmap), got shape {x.shape}"
                )
            return self.token_embedding[x]
        onehot = as_one_hot(x, self.num_positions, self.num_categories, self.token_embedding.dtype)
        return jnp.dot(onehot, self.token_embedding, precision=lax.Precision.HIGHEST)

    def _embed_context(self, context) -> Float[Array, " D"]:
        context = check_context(context, self.context_shape)
        if context is None:
            return jnp.zeros(self.d_model, self.token_embedding.dtype)
        return context.astype(self.context_projection.dtype) @ self.context_projection

    def _head(self, h: Float[Array, "M D"]) -> Float[Array, "M K"]:
        return self.final_norm(h) @ self.head_weight + self.head_bias


class _LayerNorm(eqx.Module):
    weight: Array
    bias: Array
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, dtype, eps: float = 1e-5):
        self.weight = jnp.ones(size, dtype)
        self.bias = jnp.zeros(size, dtype)
        self.eps = eps

    def __call__(self, h: Array) -> Array:
        mean = h.mean(-1, keepdims=True)
        centred = h - mean
        variance = (centred * centred).mean(-1, keepdims=True)
        return centred * lax.rsqrt(variance + self.eps) * self.weight + self.bias


class _Block(eqx.Module):
    attention_norm: _LayerNorm
    qkv_weight: Array
    qkv_bias: Array
    out_weight: Array
    out_bias: Array
    mlp_norm: _LayerNorm
    up_weight: Array
    up_bias: Array
    down_weight: Array
    down_bias: Array

    def __init__(self, d_model: int, num_heads: int, hidden: int, out_std: float, dtype, *, key):
        k_qkv, k_out, k_up, k_down = jax.random.split(key, 4)
        d_head = d_model // num_heads
        std = 0.02
        self.attention_norm = _LayerNorm(d_model, dtype)
        self.qkv_weight = _normal(k_qkv, (d_model, 3, num_heads, d_head), std, dtype)
        self.qkv_bias = jnp.zeros((3, num_heads, d_head), dtype)
        self.out_weight = _normal(k_out, (num_heads, d_head, d_model), out_std, dtype)
        self.out_bias = jnp.zeros(d_model, dtype)
        self.mlp_norm = _LayerNorm(d_model, dtype)
        self.up_weight = _normal(k_up, (d_model, hidden), std, dtype)
        self.up_bias = jnp.zeros(hidden, dtype)
        self.down_weight = _normal(k_down, (hidden, d_model), out_std, dtype)
        self.down_bias = jnp.zeros(d_model, dtype)

    def query_key_value(self, h: Float[Array, "M D"]) -> tuple[Array, Array, Array]:
        qkv = jnp.einsum("md,dthe->thme", self.attention_norm(h), self.qkv_weight)
        qkv = qkv + self.qkv_bias[:, :, None]
        return qkv[0], qkv[1], qkv[2]

    def finish(self, h: Float[Array, "M D"], attended: Float[Array, "H M E"]) -> Float[Array, "M D"]:
        # The barriers keep XLA from fusing the residual stream's chain of additions into its
        # many consumers, which recomputed the chain (forward and backward): a training step
        # 3-9 % faster in in-process comparisons.
        h = lax.optimization_barrier(h + jnp.einsum("hme,hed->md", attended, self.out_weight) + self.out_bias)
        hidden = jax.nn.gelu(self.mlp_norm(h) @ self.up_weight + self.up_bias)
        return lax.optimization_barrier(h + hidden @ self.down_weight + self.down_bias)


_QUERY_BLOCK = 64


def _causal_attend(
    q: Float[Array, "H N E"], k: Float[Array, "H E N"], v: Float[Array, "H N E"]
) -> Float[Array, "H N E"]:
    """Causal self-attention of all ``N`` positions, in blocks of ``_QUERY_BLOCK`` queries.

    Block ``b`` (queries ``s … t-1``) attends keys ``0 … t-1`` only: the score blocks above the
    diagonal, which the causal mask would zero, are never computed, so for ``N = 256`` the
    products and the softmax cover 10 of the 16 blocks of ``N × N``. Each query's softmax is over
    all its visible keys at once, so the result is the masked full attention up to rounding.
    """
    n = q.shape[1]
    blocks = []
    for start in range(0, n, _QUERY_BLOCK):
        stop = min(start + _QUERY_BLOCK, n)
        visible = jnp.asarray(np.tri(stop - start, stop, start, dtype=bool))
        blocks.append(_attend(q[:, start:stop], k[:, :, :stop], v[:, :stop], visible))
    return jnp.concatenate(blocks, axis=1)


def _attend(
    q: Float[Array, "H M E"], k: Float[Array, "H E S"], v: Float[Array, "H S E"], visible: Bool[Array, "M S"]
) -> Float[Array, "H M E"]:
    """Softmax attention of queries ``q`` over the keys they see (``visible``).

    The softmax is written out (masked scores at the dtype's lowest value, the row maximum
    subtracted outside the gradient): XLA fuses its backward pass better than that of
    ``jax.nn.softmax`` with a ``-inf`` mask (a step of the MLE benchmark about 5 % faster in an
    in-process comparison), and forward-mode differentiation still works.
    """
    scores = jnp.einsum("hme,hes->hms", q * q.shape[-1] ** -0.5, k)
    scores = jnp.where(visible, scores, jnp.finfo(scores.dtype).min)
    weights = jnp.exp(scores - lax.stop_gradient(scores.max(-1, keepdims=True)))
    weights = weights / weights.sum(-1, keepdims=True)
    return jnp.einsum("hms,hse->hme", weights, v)


def _normal(key: PRNGKeyArray, shape: tuple[int, ...], std: float, dtype) -> Array:
    """Gaussian initialisation, drawn flat: XLA on CPU compiles multi-axis draws very slowly."""
    return (std * jax.random.normal(key, (math.prod(shape),), dtype)).reshape(shape)
