r"""PixelCNN: masked convolutions on an L×L lattice (van den Oord et al. 2016; Wu et al. 2019).

Sites are visited in raster order, ``site = row * L + col``. A masked convolution with half-kernel
``h`` reads, at site ``(r, c)``, the ``h`` rows above within ``±h`` columns and the ``h`` sites to
the left in the same row; a *type-A* layer stops there (first layer: strictly earlier sites), a
*type-B* layer also reads the site itself (hidden layers: the previous layer at the same site,
which already depends on earlier sites only).

Two evaluations share the weights:

* ``net(x)`` computes every site at once. Each kernel row is a Toeplitz matrix acting on a whole
  lattice row (or on column tiles of width ``2h + 1`` plus margins when ``L > 2(2h + 1)``), so a
  layer is one large matrix product and its gradient two more of the same size, which XLA runs
  at full speed on CPU, where ``lax.conv``'s weight gradient is slow
  (``benchmarks/sampling.py --sections pixelcnn_conv_baseline`` compares both on the same weights).
  A layer with fewer output than input channels (the logits layer) multiplies each input row once
  by all ``h + 1`` kernel rows and adds the products into the output rows they reach ("push"),
  instead of stacking ``h + 1`` shifted copies of its wide input ("pull"): the same products, with
  the copies made of the narrow side.
* ``decode_step`` splits each kernel into its ``h`` rows above and its causal half-row. When a
  lattice row starts, the rows above are complete in every layer's cached input map, so their
  contribution to the whole row is one Toeplitz product per layer, for the whole batch at once;
  each site then adds only its ``h`` (type A) or ``h + 1`` (type B) taps to the left, read as one
  contiguous slice of the map. Per sample this is about one forward pass, in ``L`` large products
  instead of ``L²`` gathers of every tap.
"""

import math
from functools import lru_cache
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.nn.inputs import as_one_hot, check_decode_step, check_int, scaled_normal

__all__ = ["PixelCNN", "PixelCNNCache"]

_PADDINGS = ("zero", "periodic")


class PixelCNNCache(NamedTuple):
    """Decoding state of a [`PixelCNN`][arjax.nn.PixelCNN] for one sequence.

    Attributes:
        inputs: the input map of every masked layer, ``[L + h, L + h, C]``: lattice site
            ``(r, c)`` at ``[r + h, c + h]``, behind ``h`` zero rows on top and ``h`` zero columns
            on the left that stand for sites outside the lattice. ``inputs[0]`` holds the one-hot
            tokens (``C = K``), ``inputs[j]`` for ``j ≥ 1`` the activations fed to layer ``j``.
        above: every masked layer's output for the current lattice row from the ``h`` rows above
            it, bias included, ``[L, D]``; filled in when the row starts.
        above_weights: every masked layer's Toeplitz matrix of its ``h`` kernel rows above, in
            the form ``above`` is computed with (the same for every sequence of a batch).
        left_weights: every masked layer's taps to the left in the current row (and the site
            itself in type-B layers), ``[taps · C, D]``.
    """

    inputs: tuple[Float[Array, "Lh Lh C"], ...]
    above: tuple[Float[Array, "L D"], ...]
    above_weights: tuple[Float[Array, "M T"], ...]
    left_weights: tuple[Float[Array, "M D"], ...]


class PixelCNN(eqx.Module):
    r"""Masked-convolution autoregressive net on an ``L×L`` lattice; row ``i`` reads ``x[:i]``.

    Architecture (VAN's ``PixelCNN`` with one-hot inputs and ``K`` logits): a type-A masked
    convolution from the ``K`` one-hot channels, then ``depth - 1`` blocks ``PReLU → type-B masked
    convolution`` (with ``residual=True`` the middle blocks are VAN's ``res_block``,
    ``a + conv(PReLU(1×1(a)))``), then, if ``final_conv``, ``PReLU → 1×1`` to ``K`` logits.
    Without ``final_conv`` the last masked convolution outputs the ``K`` logits itself (VAN's
    default). Every layer has a bias; PReLU slopes are per channel and start at 0.5, as in VAN.

    Args:
        L: lattice side (≥ 2); the net models ``N = L²`` sites in raster order.
        num_categories: ``K`` (≥ 2); spins are tokens ``{0, 1}``.
        depth: number of masked convolutions (≥ 1).
        width: channels of the hidden maps.
        half_kernel: ``h`` (VAN's ``half_kernel_size``); kernels are ``(2h+1)×(2h+1)``.
        residual: VAN's ``res_block`` for the ``depth - 2`` middle blocks.
        padding: ``"zero"`` or ``"periodic"``, see below.
        final_conv: end with ``PReLU → 1×1`` to ``K`` logits (VAN's ``--final_conv``).
        dtype: parameter dtype; default float32 (float64 under ``jax_enable_x64``).
        key: a ``jax.random`` key for the initialisation.

    ``padding="zero"`` treats sites outside the lattice as empty, as VAN does.
    ``padding="periodic"`` wraps columns around the left/right edge, but only in rows *above* the
    current one: every site of an earlier row precedes the current site in raster order, whatever
    its column. Wrapping within the current row, or across the top edge, would read sites that
    come later, so there the padding stays zero. The net is therefore a cylinder in its rows
    above and open elsewhere; it is exact and causal, not translation invariant.

    Output logits are unnormalised; ``log_softmax`` happens downstream. For ``K = 2`` the logits
    ``(ℓ₀, ℓ₁)`` give VAN's ``x_hat = sigmoid(ℓ₁ - ℓ₀)``. VAN's ``x_hat_clip`` (clamping
    ``x_hat`` into ``[c, 1 - c]`` with a straight-through gradient), its ``epsilon`` inside the
    logarithms, its ``z2`` symmetrisation, and its pinning of the first site's ``x_hat`` to 0.5
    all act on probabilities, so they belong to the distribution / objective layer: a clip at
    ``c`` corresponds to clamping ``ℓ₁ - ℓ₀`` to ``±log((1 - c) / c)``, which the net does not do.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = PixelCNN(4, num_categories=2, depth=2, width=8, half_kernel=1, key=jax.random.key(0))
        >>> net(jnp.zeros(16, jnp.int32)).shape
        (16, 2)
    """

    first: "_MaskedConv"
    blocks: tuple["_Block", ...]
    head: "_Head | None"
    L: int = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    half_kernel: int = eqx.field(static=True)
    residual: bool = eqx.field(static=True)
    padding: str = eqx.field(static=True)
    final_conv: bool = eqx.field(static=True)
    context_shape: None = eqx.field(static=True)

    def __init__(
        self,
        L: int,
        num_categories: int = 2,
        *,
        depth: int = 3,
        width: int = 64,
        half_kernel: int = 3,
        residual: bool = False,
        padding: str = "zero",
        final_conv: bool = True,
        dtype: DTypeLike | None = None,
        key: PRNGKeyArray,
    ):
        check_int("L", L, minimum=2)
        check_int("num_categories", num_categories, minimum=2)
        check_int("depth", depth)
        check_int("width", width)
        check_int("half_kernel", half_kernel)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.L = int(L)
        self.num_positions = self.L * self.L
        self.num_categories = int(num_categories)
        self.depth = depth
        self.width = width
        self.half_kernel = half_kernel
        self.residual = bool(residual)
        self.padding = padding
        self.final_conv = bool(final_conv)
        self.context_shape = None
        dtype = jnp.result_type(float) if dtype is None else dtype

        K = self.num_categories
        channels = [K] + [width] * (depth - 1) + [width if final_conv else K]
        mixes = [residual and 1 <= j < depth - 1 for j in range(depth)]
        scales = []
        for j in range(depth):
            if mixes[j]:
                scales += _dense_scales(channels[j], channels[j])
            scales += _conv_scales(channels[j], channels[j + 1], half_kernel, exclusive=j == 0)
        if final_conv:
            scales += _dense_scales(width, K)
        arrays = iter(scaled_normal(key, scales, dtype))
        conv = dict(L=self.L, half_kernel=half_kernel, padding=padding)
        layers = []
        for j in range(depth):
            mix = _Pointwise(next(arrays), next(arrays)) if mixes[j] else None
            layers.append((mix, _MaskedConv(next(arrays), next(arrays), exclusive=j == 0, **conv)))
        self.first = layers[0][1]
        self.blocks = tuple(
            _Block(_slopes(channels[j], dtype), mix, masked, residual=mixes[j])
            for j, (mix, masked) in enumerate(layers[1:], start=1)
        )
        self.head = _Head(_slopes(width, dtype), _Pointwise(next(arrays), next(arrays))) if final_conv else None

    @classmethod
    def van_default(cls, L: int, *, key: PRNGKeyArray) -> "PixelCNN":
        """The PixelCNN of VAN's 2D Ising runs (Wu, Wang, Zhang, PRL 122, 080602, Fig. 2).

        ``src_ising/reproduce.sh`` runs ``--net pixelcnn --net_depth 3 --net_width 64
        --half_kernel_size 6 --bias`` (no ``--res_block``, no ``--final_conv``): a 13×13 type-A
        layer to 64 channels, one PReLU + type-B 64→64 layer, one PReLU + type-B layer to the
        output, all with biases. Its ``--z2`` and ``--x_hat_clip`` options act on the
        distribution, not the net. The paper's residual variant is
        ``PixelCNN(L, depth=6, half_kernel=3, residual=True, final_conv=False, key=key)``.

        Example:
            >>> import jax
            >>> net = PixelCNN.van_default(16, key=jax.random.key(0))
            >>> net.depth, net.width, net.half_kernel, net.residual, net.final_conv
            (3, 64, 6, False, False)
        """
        return cls(L, 2, depth=3, width=64, half_kernel=6, residual=False, final_conv=False, key=key)

    def __call__(
        self, x: Int[Array, " N"] | Float[Array, "N K"], context: None = None
    ) -> Float[Array, "N K"]:
        """Logits ``[N, K]`` of one sequence; row ``i`` reads only ``x[:i]`` in raster order.

        ``x`` is ``N = L²`` integer tokens, or ``[N, K]`` one-hot (or soft) rows used directly as
        the input channels, so ``jax.jacfwd`` can differentiate with respect to the input.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> net = PixelCNN(3, width=8, half_kernel=1, key=jax.random.key(0))
            >>> x = jnp.array([0, 1, 1, 0, 1, 0, 0, 0, 1])
            >>> bool(jnp.allclose(net(x), net(jax.nn.one_hot(x, 2))))
            True
        """
        self._check_context(context)
        self._check_x(x)
        L = self.L
        u = as_one_hot(x, self.num_positions, self.num_categories, self.first.weight.dtype)
        a = self.first(u.reshape(L, L, -1))
        for block in self.blocks:
            a = block(a)
        if self.head is not None:
            a = self.head(a)
        return a.reshape(self.num_positions, self.num_categories)

    def init_cache(self, context: None = None) -> PixelCNNCache:
        """Empty decoding state for one sequence: zero input maps for every masked layer, and the
        kernels in the form the steps read them.

        Example:
            >>> import jax
            >>> net = PixelCNN(3, width=8, half_kernel=1, key=jax.random.key(0))
            >>> [m.shape for m in net.init_cache().inputs]
            [(4, 4, 2), (4, 4, 8), (4, 4, 8)]
        """
        self._check_context(context)
        layers = self._masked_layers()
        size = self.L + self.half_kernel
        dtype = self.first.weight.dtype
        return PixelCNNCache(
            inputs=tuple(jnp.zeros((size, size, conv.weight.shape[1]), dtype) for conv in layers),
            above=tuple(jnp.zeros((self.L, conv.weight.shape[0]), dtype) for conv in layers),
            above_weights=tuple(conv.above_weights() for conv in layers),
            left_weights=tuple(conv.left_weights() for conv in layers),
        )

    def decode_step(
        self, cache: PixelCNNCache, i: Int[Array, ""] | int, token: Int[Array, ""] | int
    ) -> tuple[Float[Array, " K"], PixelCNNCache]:
        """Logits of site ``i`` given ``token = x[i-1]``, and the cache with site ``i`` filled in.

        ``i`` may be traced (e.g. the counter of a ``lax.scan``); ``token`` is ignored at
        ``i = 0``. Sites must be decoded in raster order ``0, 1, ..., N-1``. At the first site
        of a lattice row every layer computes that row's contribution of the rows above it
        (one Toeplitz product); each site then adds its taps to the left in the current row,
        a slice of the layer's cached input map. The logits equal row ``i`` of ``net(x)``.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> net = PixelCNN(2, width=8, half_kernel=1, key=jax.random.key(0))
            >>> x = jnp.array([1, 0, 1, 1])
            >>> cache = net.init_cache()
            >>> rows = []
            >>> for i, prev in enumerate([0, 1, 0, 1]):
            ...     logits, cache = net.decode_step(cache, i, prev)
            ...     rows.append(logits)
            >>> bool(jnp.allclose(jnp.stack(rows), net(x), atol=1e-5))
            True
        """
        i, token = check_decode_step(i, token)
        L, h = self.L, self.half_kernel
        row, col = i // L, i % L
        onehot = jax.nn.one_hot(token, self.num_categories, dtype=cache.inputs[0].dtype) * (i > 0)
        previous = jnp.maximum(i - 1, 0)
        inputs = (_write(cache.inputs[0], previous // L + h, previous % L + h, onehot),) + cache.inputs[1:]
        layers = self._masked_layers()

        def rows_above(inputs):
            return tuple(conv.rows_above(m, row, w) for conv, m, w in zip(layers, inputs, cache.above_weights))

        above = lax.cond(col == 0, rows_above, lambda _: cache.above, inputs)
        maps = [inputs[0]]
        a = self.first.left(maps[0], row, col, cache.left_weights[0]) + above[0][col]
        for block, m, a_above, w in zip(self.blocks, inputs[1:], above[1:], cache.left_weights[1:]):
            maps.append(_write(m, row + h, col + h, block.inputs(a)))
            a = block.combine(a, block.conv.left(maps[-1], row, col, w) + a_above[col])
        if self.head is not None:
            a = self.head(a)
        return a, cache._replace(inputs=tuple(maps), above=above)

    def _masked_layers(self) -> tuple["_MaskedConv", ...]:
        return (self.first,) + tuple(block.conv for block in self.blocks)

    def _check_x(self, x) -> None:
        shape = jnp.shape(x)
        N, K = self.num_positions, self.num_categories
        if shape in ((N,), (N, K)):
            return
        hint = ""
        side = math.isqrt(shape[0]) if len(shape) in (1, 2) else 0
        if len(shape) == 2 and shape[0] == shape[1] == self.L:
            hint = "; flatten an L×L configuration in raster order with x.reshape(-1)"
        elif side >= 2 and side * side == shape[0]:
            hint = f"; that is a {side}×{side} lattice, but this PixelCNN was built for L={self.L}"
        raise ValueError(
            f"x must have shape ({N},) (tokens of the {self.L}×{self.L} lattice in raster order; batch "
            f"with jax.vmap) or ({N}, {K}) one-hot rows, got shape {shape}{hint}"
        )

    @staticmethod
    def _check_context(context) -> None:
        if context is not None:
            raise ValueError(
                f"PixelCNN takes no context (context_shape is None), got context of shape {jnp.shape(context)}"
            )


class _MaskedConv(eqx.Module):
    weight: Float[Array, "out in k k"]
    bias: Float[Array, " out"]
    L: int = eqx.field(static=True)
    half_kernel: int = eqx.field(static=True)
    exclusive: bool = eqx.field(static=True)
    padding: str = eqx.field(static=True)

    def __call__(self, u: Float[Array, "L L C"]) -> Float[Array, "L L D"]:
        L, h = self.L, self.half_kernel
        out_channels, in_channels = self.weight.shape[:2]
        tile = _tile_width(L, h)
        if tile == L and out_channels < in_channels:
            return self._push(u)
        toeplitz = self._toeplitz(h + 1).reshape(-1, tile * out_channels)
        rows = jnp.pad(u, ((h, 0), (0, 0), (0, 0)))
        rows = jnp.stack([rows[d : d + L] for d in range(h + 1)], axis=1)
        if tile == L:
            out = rows.reshape(L, -1) @ toeplitz
        else:
            windows = _column_windows(rows, h, tile, self.padding)
            out = windows.reshape(L, windows.shape[1], -1) @ toeplitz
        return out.reshape(L, -1, out_channels)[:, :L] + self.bias

    def above_weights(self) -> Float[Array, "M T"]:
        """Toeplitz matrix of the ``h`` kernel rows above, as ``rows_above`` multiplies it."""
        tile = _tile_width(self.L, self.half_kernel)
        return self._toeplitz(self.half_kernel).reshape(-1, tile * self.weight.shape[0])

    def left_weights(self) -> Float[Array, "M D"]:
        """Kernel entries of the current row's taps (left of the site, and the site if type B), ``[taps·C, D]``."""
        h = self.half_kernel
        taps = h if self.exclusive else h + 1
        return jnp.transpose(self.weight[:, :, h, :taps], (2, 1, 0)).reshape(taps * self.weight.shape[1], -1)

    def rows_above(self, inputs: Float[Array, "Lh Lh C"], row: Int[Array, ""], weights: Array) -> Float[Array, "L D"]:
        """Output of lattice row ``row`` from the ``h`` rows above it, bias included."""
        L, h = self.L, self.half_kernel
        zero = jnp.zeros((), row.dtype)
        slab = lax.dynamic_slice(inputs, (row, zero + h, zero), (h, L, inputs.shape[-1]))
        tile = _tile_width(L, h)
        if tile == L:
            out = slab.reshape(-1) @ weights
        else:
            windows = _column_windows(slab[None], h, tile, self.padding, above=h)
            out = windows.reshape(windows.shape[1], -1) @ weights
        return out.reshape(-1, self.weight.shape[0])[:L] + self.bias

    def left(
        self, inputs: Float[Array, "Lh Lh C"], row: Int[Array, ""], col: Int[Array, ""], weights: Array
    ) -> Float[Array, " D"]:
        """The current row's taps of site ``(row, col)``: one contiguous slice of the padded map."""
        h = self.half_kernel
        taps = h if self.exclusive else h + 1
        window = lax.dynamic_slice(inputs, (row + h, col, jnp.zeros((), row.dtype)), (1, taps, inputs.shape[-1]))
        return window.reshape(-1) @ weights

    def _push(self, u: Float[Array, "L L C"]) -> Float[Array, "L L D"]:
        """Whole rows, each input row times all ``h + 1`` Toeplitz blocks, summed into the rows they reach."""
        L, h = self.L, self.half_kernel
        out_channels = self.weight.shape[0]
        toeplitz = jnp.moveaxis(self._toeplitz(h + 1), 0, 2).reshape(L * self.weight.shape[1], -1)
        pushed = (u.reshape(L, -1) @ toeplitz).reshape(L, h + 1, L * out_channels)
        pushed = jnp.pad(pushed, ((h, 0), (0, 0), (0, 0)))
        out = sum(pushed[d : d + L, d] for d in range(h + 1))
        return out.reshape(L, L, out_channels) + self.bias

    def _toeplitz(self, rows: int) -> Float[Array, "R J C T D"]:
        """Kernel rows ``0 … rows-1`` (from ``h`` rows above) as Toeplitz blocks ``[rows, J, C, tile, D]``."""
        h = self.half_kernel
        tile = _tile_width(self.L, h)
        selection = _selection(self.L, h, self.exclusive, self.padding == "periodic", tile)[:rows]
        return jnp.einsum("rdjn,oird->rjino", selection, self.weight[:, :, :rows])


class _Pointwise(eqx.Module):
    weight: Float[Array, "out in"]
    bias: Float[Array, " out"]

    def __call__(self, a: Float[Array, "*S C"]) -> Float[Array, "*S D"]:
        return a @ self.weight.T + self.bias


class _Block(eqx.Module):
    slope: Float[Array, " C"]
    mix: _Pointwise | None
    conv: _MaskedConv
    residual: bool = eqx.field(static=True)

    def __call__(self, a: Float[Array, "L L C"]) -> Float[Array, "L L D"]:
        return self.combine(a, self.conv(self.inputs(a)))

    def inputs(self, a: Float[Array, "*S C"]) -> Float[Array, "*S C"]:
        return _prelu(self.slope, a if self.mix is None else self.mix(a))

    def combine(self, a: Array, y: Array) -> Array:
        return a + y if self.residual else y


class _Head(eqx.Module):
    slope: Float[Array, " C"]
    out: _Pointwise

    def __call__(self, a: Float[Array, "*S C"]) -> Float[Array, "*S K"]:
        return self.out(_prelu(self.slope, a))


def _prelu(slope: Array, a: Array) -> Array:
    return jnp.where(a >= 0, a, slope * a)


def _slopes(channels: int, dtype) -> Array:
    """PReLU slopes, one per channel, starting at VAN's 0.5."""
    return jnp.asarray(np.full(channels, 0.5), dtype)


def _conv_scales(in_channels: int, out_channels: int, h: int, exclusive: bool) -> list[np.ndarray]:
    """Standard deviations of VAN's masked-conv initialisation (PyTorch's uniform bound ``1/√fan_in``,
    with ``fan_in`` counting unmasked taps only for the weight); masked entries start at zero."""
    mask = _kernel_mask(h, exclusive)
    weight = np.broadcast_to(mask / np.sqrt(3 * in_channels * mask.sum()), (out_channels, in_channels) + mask.shape)
    return [weight, np.full(out_channels, 1 / np.sqrt(3 * in_channels * mask.size))]


def _dense_scales(in_channels: int, out_channels: int) -> list[np.ndarray]:
    scale = 1 / np.sqrt(3 * in_channels)
    return [np.full((out_channels, in_channels), scale), np.full(out_channels, scale)]


def _write(inputs: Array, r: Array, c: Array, value: Array) -> Array:
    return lax.dynamic_update_slice(inputs, value[None, None].astype(inputs.dtype), (r, c, jnp.zeros((), r.dtype)))


def _column_windows(rows: Array, h: int, tile: int, padding: str, above: int | None = None) -> Array:
    """Overlapping column windows ``[M, tiles, R, tile+2h, C]`` of row stacks ``[M, R, L, C]``.

    The first ``above`` rows of a stack (default ``h``) lie above the output row and wrap around
    when periodic; the others are in the output row and are zero-padded.
    """
    above = h if above is None else above
    L = rows.shape[2]
    tiles = -(-L // tile)
    widths = ((0, 0), (0, 0), (h, tiles * tile - L + h), (0, 0))
    wrapped = jnp.pad(rows[:, :above], widths, mode="wrap" if padding == "periodic" else "constant")
    padded = jnp.concatenate([wrapped, jnp.pad(rows[:, above:], widths)], axis=1)
    return jnp.stack([padded[:, :, t * tile : t * tile + tile + 2 * h] for t in range(tiles)], axis=1)


def _tile_width(L: int, h: int) -> int:
    """Whole rows while a row is at most twice the kernel width, else tiles one kernel wide."""
    return L if L <= 2 * (2 * h + 1) else 2 * h + 1


@lru_cache(maxsize=None)
def _taps(h: int, exclusive: bool) -> tuple[tuple[int, int], ...]:
    """Unmasked kernel offsets ``(dr, dc)`` in raster order of the sites they read."""
    above = [(dr, dc) for dr in range(-h, 0) for dc in range(-h, h + 1)]
    left = [(0, dc) for dc in range(-h, 0 if exclusive else 1)]
    return tuple(above + left)


@lru_cache(maxsize=None)
def _kernel_mask(h: int, exclusive: bool) -> np.ndarray:
    mask = np.zeros((2 * h + 1, 2 * h + 1), np.float32)
    for dr, dc in _taps(h, exclusive):
        mask[dr + h, dc + h] = 1
    return mask


@lru_cache(maxsize=None)
def _selection(L: int, h: int, exclusive: bool, periodic: bool, tile: int) -> np.ndarray:
    """``S[dr, dc, j, n] = 1`` when output column ``n`` reads input column ``j`` through tap ``(dr, dc)``.

    Whole rows (``tile == L``): ``j = n + dc``, wrapped modulo ``L`` in rows above when periodic,
    dropped when off the lattice. Tiles: ``j = n + dc + h`` inside a window padded by ``h``.
    """
    width = L if tile == L else tile + 2 * h
    S = np.zeros((h + 1, 2 * h + 1, width, tile), np.float32)
    for dr, dc in _taps(h, exclusive):
        for n in range(tile):
            if tile != L:
                S[dr + h, dc + h, n + dc + h, n] = 1
            elif periodic and dr < 0:
                S[dr + h, dc + h, (n + dc) % L, n] += 1
            elif 0 <= n + dc < L:
                S[dr + h, dc + h, n + dc, n] = 1
    return S
