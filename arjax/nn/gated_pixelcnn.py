r"""Gated PixelCNN without a blind spot (van den Oord et al. 2016, *Conditional Image Generation
with PixelCNN Decoders*), on an L×L lattice in raster order.

A single stack of masked convolutions ([`PixelCNN`][arjax.nn.PixelCNN], VAN's net) never sees the
sites of the row just above that lie more than ``h`` columns to the right of the current site,
however deep it is: that is the blind spot. Here two stacks run side by side:

* the *vertical* stack ``v`` at ``(r, c)`` reads only rows above ``r`` (first layer: rows
  ``r-h … r-1``, columns ``c-h … c+h``; later layers: ``v`` itself in rows ``r-h … r``, which
  still depends on rows above ``r`` only), so its receptive field widens by ``h`` columns per layer
  on both sides;
* the *horizontal* stack ``h`` at ``(r, c)`` reads the current row to the left (first layer:
  columns ``c-h … c-1``; later layers ``c-h … c``) plus ``v`` at ``(r, c)`` through a 1×1 link.

Each layer gates its pre-activation, ``tanh(a) ⊙ σ(b)``, and the horizontal stack is residual
after the first layer. Row ``i`` of the logits therefore reads every earlier site once
``depth · h ≥ L - 1``; ``tests/test_gated_pixelcnn.py`` checks the full lower triangle of the
Jacobian and that a plain PixelCNN of the same size misses part of it. Zero padding only. The net
has no ``decode_step``: sampling reruns it per site (``N`` passes).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.nn.inputs import as_one_hot, check_context, check_int, scaled_normal

__all__ = ["GatedPixelCNN"]


class _GatedLayer(eqx.Module):
    vertical: Float[Array, "rows cols cin cout2"]
    vertical_bias: Float[Array, " cout2"]
    link: Float[Array, "cout2 cout2"]
    horizontal: Float[Array, "1 cols cin cout2"]
    horizontal_bias: Float[Array, " cout2"]
    out: Float[Array, "cout cout"] | None
    out_bias: Float[Array, " cout"] | None


class GatedPixelCNN(eqx.Module):
    r"""Blind-spot-free gated PixelCNN over an ``L×L`` lattice; row ``i`` of the logits reads ``x[:i]``.

    Args:
        L: lattice side (≥ 2); ``N = L²`` sites in raster order.
        num_categories: ``K`` (≥ 2).
        depth: number of gated layers (≥ 1); every earlier site is seen when ``depth·h ≥ L - 1``.
        width: channels of each stack.
        half_kernel: ``h``; vertical kernels span ``2h + 1`` columns, horizontal ones ``h`` (+1).
        dtype: parameter dtype; default float32 (float64 under ``jax_enable_x64``).
        key: a ``jax.random`` key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = GatedPixelCNN(4, num_categories=2, depth=3, width=8, key=jax.random.key(0))
        >>> net(jnp.zeros(16, jnp.int32)).shape
        (16, 2)
    """

    layers: tuple[_GatedLayer, ...]
    head: Float[Array, "width K"]
    head_bias: Float[Array, " K"]
    L: int = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    half_kernel: int = eqx.field(static=True)
    context_shape: None = eqx.field(static=True)

    def __init__(
        self,
        L: int,
        num_categories: int = 2,
        *,
        depth: int = 4,
        width: int = 32,
        half_kernel: int = 1,
        dtype: DTypeLike | None = None,
        key: PRNGKeyArray,
    ):
        check_int("L", L, minimum=2)
        check_int("num_categories", num_categories, minimum=2)
        check_int("depth", depth)
        check_int("width", width)
        check_int("half_kernel", half_kernel)
        self.L, self.num_positions, self.num_categories = int(L), int(L) * int(L), int(num_categories)
        self.depth, self.width, self.half_kernel = depth, width, half_kernel
        self.context_shape = None
        dtype = jnp.result_type(float) if dtype is None else dtype
        h, w, k = half_kernel, width, num_categories

        shapes = []
        for layer in range(depth):
            rows, cin, cols = (h, k, h) if layer == 0 else (h + 1, w, h + 1)
            shapes.append(
                dict(
                    vertical=(rows, 2 * h + 1, cin, 2 * w),
                    vertical_bias=(2 * w,),
                    link=(2 * w, 2 * w),
                    horizontal=(1, cols, cin, 2 * w),
                    horizontal_bias=(2 * w,),
                    out=None if layer == 0 else (w, w),
                    out_bias=None if layer == 0 else (w,),
                )
            )
        scales = []
        for spec in shapes:
            for name, shape in spec.items():
                if shape is not None:
                    fan_in = int(np.prod(shape[:-1])) if "bias" not in name else None
                    scales.append(np.full(shape, 0.0 if fan_in is None else 1 / np.sqrt(fan_in)))
        scales += [np.full((w, k), 1 / np.sqrt(w)), np.zeros(k)]
        arrays = iter(scaled_normal(key, scales, dtype))
        self.layers = tuple(
            _GatedLayer(**{name: None if shape is None else next(arrays) for name, shape in spec.items()})
            for spec in shapes
        )
        self.head, self.head_bias = next(arrays), next(arrays)

    def __call__(
        self, x: Int[Array, " N"] | Float[Array, "N K"], context: None = None
    ) -> Float[Array, "N K"]:
        """Logits ``[N, K]``; row ``i`` depends only on ``x[:i]``."""
        check_context(context, self.context_shape)
        one_hot = as_one_hot(x, self.num_positions, self.num_categories, self.head.dtype)
        image = one_hot.reshape(1, self.L, self.L, self.num_categories)
        h = self.half_kernel
        v = hor = image
        for index, layer in enumerate(self.layers):
            first = index == 0
            v_pre = _conv(v, layer.vertical, ((h, 0), (h, h)), rows=self.L, cols=self.L)
            v_pre = v_pre + layer.vertical_bias
            h_pre = _conv(hor, layer.horizontal, ((0, 0), (h, 0)), rows=self.L, cols=self.L)
            h_pre = h_pre + layer.horizontal_bias + v_pre @ layer.link
            v = _gate(v_pre)
            hor = _gate(h_pre) if first else hor + _gate(h_pre) @ layer.out + layer.out_bias
        logits = jax.nn.relu(hor) @ self.head + self.head_bias
        return logits.reshape(self.num_positions, self.num_categories)


def _conv(image, kernel, padding, *, rows: int, cols: int):
    out = lax.conv_general_dilated(image, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out[:, :rows, :cols]


def _gate(pre):
    a, b = jnp.split(pre, 2, axis=-1)
    return jnp.tanh(a) * jax.nn.sigmoid(b)
