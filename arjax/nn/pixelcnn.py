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
* ``decode_step`` computes one site per layer from the cached input maps of every layer: the
  taps of the site are gathered and contracted with the unmasked kernel entries, costing
  ``depth · taps · width²`` per site instead of a full network pass.
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
        inputs: the input map of every masked layer, flattened in raster order with one extra
            all-zero row at index ``N`` that stands for sites outside the lattice. ``inputs[0]``
            holds the one-hot tokens ``[N + 1, K]``; ``inputs[j]`` for ``j ≥ 1`` holds the
            activations fed to hidden layer ``j``, ``[N + 1, width]``.
    """

    inputs: tuple[Float[Array, "N+1 C"], ...]


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
        """Empty decoding state for one sequence: zero input maps for every masked layer.

        Example:
            >>> import jax
            >>> net = PixelCNN(3, width=8, half_kernel=1, key=jax.random.key(0))
            >>> [m.shape for m in net.init_cache().inputs]
            [(10, 2), (10, 8), (10, 8)]
        """
        self._check_context(context)
        dtype = self.first.weight.dtype
        layers = (self.first,) + tuple(block.conv for block in self.blocks)
        return PixelCNNCache(tuple(jnp.zeros((self.num_positions + 1, c.weight.shape[1]), dtype) for c in layers))

    def decode_step(
        self, cache: PixelCNNCache, i: Int[Array, ""] | int, token: Int[Array, ""] | int
    ) -> tuple[Float[Array, " K"], PixelCNNCache]:
        """Logits of site ``i`` given ``token = x[i-1]``, and the cache with site ``i`` filled in.

        ``i`` may be traced (e.g. the counter of a ``lax.scan``); ``token`` is ignored at
        ``i = 0``. Sites must be decoded in raster order ``0, 1, ..., N-1``. Each layer computes
        site ``i`` alone from the taps gathered out of its cached input map; the logits equal
        row ``i`` of ``net(x)``.

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
        onehot = jax.nn.one_hot(token, self.num_categories, dtype=cache.inputs[0].dtype) * (i > 0)
        maps = [_write(cache.inputs[0], jnp.maximum(i - 1, 0), onehot)]
        a = self.first.at(maps[0], i)
        for block, inputs in zip(self.blocks, cache.inputs[1:]):
            maps.append(_write(inputs, i, block.inputs(a)))
            a = block.combine(a, block.conv.at(maps[-1], i))
        if self.head is not None:
            a = self.head(a)
        return a, PixelCNNCache(tuple(maps))

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
        tile = _tile_width(L, h)
        selection = _selection(L, h, self.exclusive, self.padding == "periodic", tile)
        toeplitz = jnp.einsum("rdjn,oird->rjino", selection, self.weight[:, :, : h + 1])
        toeplitz = toeplitz.reshape(-1, tile * self.weight.shape[0])
        rows = jnp.pad(u, ((h, 0), (0, 0), (0, 0)))
        rows = jnp.stack([rows[d : d + L] for d in range(h + 1)], axis=1)
        if tile == L:
            out = rows.reshape(L, -1) @ toeplitz
        else:
            windows = _column_windows(rows, h, tile, self.padding)
            out = windows.reshape(L, windows.shape[1], -1) @ toeplitz
        return out.reshape(L, -1, self.weight.shape[0])[:, :L] + self.bias

    def at(self, inputs: Float[Array, "N+1 C"], i: Int[Array, ""]) -> Float[Array, " D"]:
        sites = _tap_sites(self.L, self.half_kernel, self.exclusive, self.padding == "periodic")
        rows, cols = np.asarray(_taps(self.half_kernel, self.exclusive)).T + self.half_kernel
        patch = inputs[jnp.asarray(sites)[i]].reshape(-1)
        taps = jnp.transpose(self.weight[:, :, rows, cols], (2, 1, 0)).reshape(patch.shape[0], -1)
        return patch @ taps + self.bias


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


def _write(inputs: Array, site: Array, row: Array) -> Array:
    return lax.dynamic_update_slice(inputs, row[None].astype(inputs.dtype), (site, jnp.zeros((), site.dtype)))


def _column_windows(rows: Array, h: int, tile: int, padding: str) -> Array:
    """Overlapping column windows ``[L, tiles, h+1, tile+2h, C]`` of the row stack ``[L, h+1, L, C]``."""
    L = rows.shape[0]
    tiles = -(-L // tile)
    widths = ((0, 0), (0, 0), (h, tiles * tile - L + h), (0, 0))
    above = jnp.pad(rows[:, :h], widths, mode="wrap" if padding == "periodic" else "constant")
    padded = jnp.concatenate([above, jnp.pad(rows[:, h:], widths)], axis=1)
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


@lru_cache(maxsize=None)
def _tap_sites(L: int, h: int, exclusive: bool, periodic: bool) -> np.ndarray:
    """``[N, taps]`` raster index of the site each tap reads, ``N`` (the zero row) off the lattice."""
    taps = _taps(h, exclusive)
    sites = np.full((L * L, len(taps)), L * L, np.int32)
    for r in range(L):
        for c in range(L):
            for m, (dr, dc) in enumerate(taps):
                col = (c + dc) % L if periodic and dr < 0 else c + dc
                if r + dr >= 0 and 0 <= col < L:
                    sites[r * L + c, m] = (r + dr) * L + col
    return sites
