"""Log-likelihoods of the discrete skeleton (space group, Wyckoff letters, elements) under both crystal models.

* The mixed model (``CrystalEncoder`` + ``CrystalTransformer``) puts the skeleton first, so
  ``ln p(skeleton)`` is the exact sum of the first ``2S + 1`` conditionals (``encoder_skeleton_log_prob``).
* The binned model (``CrystalTokenizer``) interleaves each site's coordinate bins with its tokens,
  so ``p(skeleton) = Σ_coordinates p(skeleton, coordinates)`` is estimated by sequential importance
  sampling with the model's own conditionals as proposal (``tokenizer_skeleton_log_prob``):
  coordinate bins are drawn from ``p(c_j | prefix)``, skeleton tokens are forced to the data's, and
  the weight is the product of the forced tokens' conditionals, whose expectation is exactly
  ``p(skeleton)``. The log of the ``K``-sample mean underestimates ``ln p`` on average (Jensen), less
  so as ``K`` grows.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.allowed import masked_log_softmax
from arjax.crystal.tokens import END_TOKEN, CrystalTokenizer
from arjax.families.base import pick_component
from arjax.families.layout import net_layout

__all__ = ["encoder_skeleton_log_prob", "position_log_probs", "tokenizer_skeleton_log_prob"]


def position_log_probs(net: eqx.Module, x: Float[Array, "M N"], allowed, *, chunk: int = 512) -> np.ndarray:
    """``ln p(x_i | x_<i)`` of every position of every row of ``x`` (``allowed`` on token positions), in chunks.

    >>> import jax
    >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
    >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
    >>> net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
    >>> position_log_probs(net, enc.encode_batch(["225-a-Na-b-Cl-X-5.64"]), enc.allowed).shape
    (1, 17)
    """
    x = np.asarray(x)
    dtype = jnp.result_type(float) if net_layout(net).categorical_size is None or x.dtype.kind == "f" else jnp.int32
    pad = -len(x) % chunk
    padded = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x
    parts = [np.asarray(_chunk_log_probs(net, jnp.asarray(padded[k : k + chunk], dtype), allowed))
             for k in range(0, len(padded), chunk)]  # fmt: skip
    return np.concatenate(parts)[: len(x)].astype(np.float64)


def encoder_skeleton_log_prob(net: eqx.Module, x: Float[Array, "M N"]) -> np.ndarray:
    """Exact ``ln p(group, letters, elements)`` of encoded crystals under a ``CrystalTransformer``.

    >>> import jax
    >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
    >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
    >>> net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
    >>> float(encoder_skeleton_log_prob(net, enc.encode_batch(["225-a-Na-b-Cl-X-5.64"]))[0]) < 0
    True
    """
    encoder = net.encoder
    return position_log_probs(net, x, encoder.allowed)[:, encoder.skeleton_positions].sum(axis=1)


def tokenizer_skeleton_log_prob(
    net: eqx.Module,
    tokenizer: CrystalTokenizer,
    x: Int[Array, "M N"],
    *,
    key: PRNGKeyArray,
    num_samples: int = 16,
    chunk: int = 256,
) -> np.ndarray:
    """Importance-sampling estimate of ``ln p(group, letters, elements, end)`` under a binned token model.

    ``net`` must have the Transformer's ``init_cache``/``decode_step``. Returns one estimate per
    row of ``x`` from ``num_samples`` draws of its coordinate bins (module docstring).

    >>> import jax
    >>> from arjax.nn import Transformer
    >>> tok = CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2, coordinate_bins=4,
    ...                        length_range=(5.0, 6.0), length_bins=3, angle_bins=1)
    >>> net = Transformer(tok.num_positions, tok.num_categories, d_model=16, num_heads=2, key=jax.random.key(0))
    >>> x = tok.encode_batch(["225-a-Na-e-Cl-0.25-X-5.5"])
    >>> float(tokenizer_skeleton_log_prob(net, tok, x, key=jax.random.key(1), num_samples=4)[0]) < 0
    True
    """
    x = np.asarray(x, np.int32)
    forced = _forced_positions(tokenizer, x)
    rows = np.repeat(np.arange(len(x)), num_samples)
    pad = -len(rows) % chunk
    rows = np.concatenate([rows, np.zeros(pad, int)])
    keys = jax.random.split(key, len(rows))
    log_w = []
    for k in range(0, len(rows), chunk):
        part = rows[k : k + chunk]
        log_w.append(np.asarray(_importance_weights(net, tokenizer.allowed, jnp.asarray(x[part]),
                                                    jnp.asarray(forced[part]), keys[k : k + chunk])))  # fmt: skip
    log_w = np.concatenate(log_w)[: len(x) * num_samples].reshape(len(x), num_samples).astype(np.float64)
    top = log_w.max(axis=1, keepdims=True)
    return (top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1)))


def _forced_positions(tokenizer: CrystalTokenizer, x: np.ndarray) -> np.ndarray:
    """Skeleton tokens (group, letters, elements, the end token) up to and including the end token."""
    skeleton = ((x >= tokenizer.group_start) & (x < tokenizer.coordinate_start)) | (x == END_TOKEN)
    ended_before = np.cumsum(x == END_TOKEN, axis=1) - (x == END_TOKEN) > 0
    return skeleton & ~ended_before


@eqx.filter_jit
def _chunk_log_probs(net, x, allowed):
    layout = net_layout(net)

    def one(v):
        rows = jax.vmap(lambda i: allowed(v, i))(jnp.arange(net.num_positions))
        return layout.log_probs(net(v), v, rows)

    return jax.vmap(one)(x)


@eqx.filter_jit
def _importance_weights(net, rule, data, forced, keys) -> Float[Array, " B"]:
    n = net.num_positions

    def one(x_data, is_forced, key):
        uniforms = jax.random.uniform(key, (n,))

        def step(carry, i):
            cache, previous, x, log_w = carry
            logits, cache = net.decode_step(cache, i, previous)
            log_p = masked_log_softmax(logits, rule(x, i))
            drawn = pick_component(log_p, uniforms[i])
            token = jnp.where(is_forced[i], x_data[i], jnp.where(jnp.arange(n)[i] < _end(x_data), drawn, x_data[i]))
            log_w = log_w + jnp.where(is_forced[i], log_p[x_data[i]], 0.0)
            return (cache, token, x.at[i].set(token), log_w), None

        init = (net.init_cache(), jnp.zeros((), jnp.int32), jnp.zeros(n, jnp.int32), jnp.zeros(()))
        (_, _, _, log_w), _ = lax.scan(step, init, jnp.arange(n))
        return log_w

    return jax.vmap(one)(data, forced, keys)


def _end(x: Int[Array, " N"]) -> Int[Array, ""]:
    return jnp.argmax(x == END_TOKEN)
