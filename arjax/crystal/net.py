"""``CrystalTransformer``: a causal Transformer over the mixed crystal sequence, with KV-cache decoding.

The Transformer (``arjax.nn.Transformer`` with the encoder's families) gives every position's raw
parameters; this net then sets what the prefix decides exactly, not by learning:

* the gate of every continuous slot: a coordinate slot is on when its site holds a letter with
  that many free coordinates, a lattice slot when the crystal system leaves that parameter free;
* the interval of the angle ``γ``: ``|α - β| < γ < min(α + β, 360° - α - β)``, where the drawn
  ``α, β`` and ``γ`` describe a cell of positive volume (the family is exactly normalised there);
* the size of the cell: the log-normal locations of the scale ``a`` are shifted by
  ``ln(N_atoms) / 3``, so the net models ``a / N_atoms^(1/3)`` (CrystalFormer's normalisation)
  while the sequence holds ``a`` in Å, and the density stays exact;
* with the encoder's ``min_separation`` set, the lower bound of the scale ``a``: the smallest value
  at which the drawn atoms and cell shape are structurally valid (``geometry.minimum_scale``; 1e-5
  above it, so that float32 rounding keeps a draw at the bound valid), so every crystal the model
  gives density to is valid.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.crystal.encoder import CrystalEncoder
from arjax.crystal.encoder_grammar import group_index, site_letters
from arjax.crystal.geometry import minimum_scale
from arjax.nn.transformer import KVCache, Transformer

__all__ = ["CrystalCache", "CrystalTransformer"]


class CrystalCache(NamedTuple):
    """Decoding state of a ``CrystalTransformer`` for one sequence.

    Attributes:
        transformer: the Transformer's key/value cache.
        prefix: the values seen so far at their positions (``[N]``, zeros after them).
    """

    transformer: KVCache
    prefix: Float[Array, " N"]


class CrystalTransformer(eqx.Module):
    """A crystal model's net: ``net(x) -> [N, P]`` conditional parameters, row ``i`` reading ``x[:i]``.

    Use it with ``arjax.Autoregressive(net, allowed=encoder.allowed)``; sampling takes the
    ``init_cache``/``decode_step`` fast path (one query per position against cached keys and values).

    Example:
        >>> import jax
        >>> from arjax.crystal.encoder import CrystalEncoder
        >>> enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=2, max_atoms=8)
        >>> net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
        >>> net(jnp.asarray(enc.encode("225-a-Na-b-Cl-X-5.64"), jnp.float32)).shape
        (17, 49)
    """

    transformer: Transformer
    encoder: CrystalEncoder = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    families: tuple = eqx.field(static=True)
    num_categories: None = eqx.field(static=True)
    context_shape: None = eqx.field(static=True)

    def __init__(
        self,
        encoder: CrystalEncoder,
        *,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        mlp_ratio: int = 4,
        key: PRNGKeyArray,
    ):
        """Args as ``arjax.nn.Transformer``; the positions and families come from ``encoder``."""
        if not isinstance(encoder, CrystalEncoder):
            raise TypeError(f"encoder must be a CrystalEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        self.families = encoder.families
        self.num_positions = encoder.num_positions
        self.num_categories = None
        self.context_shape = None
        self.transformer = Transformer(
            encoder.num_positions,
            families=encoder.families,
            d_model=d_model,
            num_heads=num_heads,
            num_layers=num_layers,
            mlp_ratio=mlp_ratio,
            key=key,
        )

    def __call__(self, x: Float[Array, " N"], context: None = None) -> Float[Array, "N P"]:
        """Every position's parameters (tokens: logits; continuous slots: gate and mixture parameters)."""
        if context is not None:
            raise ValueError("context was given, but a CrystalTransformer takes none")
        return _set_by_prefix(self.encoder, self.transformer(x), x)

    def init_cache(self, context: None = None) -> CrystalCache:
        """Empty decoding state for one sequence."""
        if context is not None:
            raise ValueError("context was given, but a CrystalTransformer takes none")
        dtype = self.transformer.token_embedding.dtype
        return CrystalCache(self.transformer.init_cache(), jnp.zeros(self.num_positions, dtype))

    def decode_step(
        self, cache: CrystalCache, i: Int[Array, ""] | int, token: Float[Array, ""] | float
    ) -> tuple[Float[Array, " P"], CrystalCache]:
        """Parameters of position ``i`` given ``token = x[i-1]`` (row ``i`` of ``net(x)``), and the updated cache."""
        params, transformer_cache = self.transformer.decode_step(cache.transformer, i, token)
        i = jnp.asarray(i, jnp.int32)
        previous = jnp.maximum(i - 1, 0)
        value = jnp.where(i > 0, jnp.asarray(token, cache.prefix.dtype), cache.prefix[previous])
        prefix = cache.prefix.at[previous].set(value)
        rows = _set_by_prefix(self.encoder, jnp.broadcast_to(params, (self.num_positions,) + params.shape), prefix,
                              bound=False)  # fmt: skip
        row = jax.lax.dynamic_index_in_dim(rows, i, keepdims=False)
        if self.encoder.min_separation is not None:
            scale = self.encoder.scale_position
            log_lower = jax.lax.cond(i == scale, lambda: _log_lower(self.encoder, prefix).astype(row.dtype),
                                     lambda: row[0])  # fmt: skip
            row = row.at[0].set(log_lower)
        return row, CrystalCache(transformer_cache, prefix)


def _set_by_prefix(
    encoder: CrystalEncoder, params: Float[Array, "N P"], x: Float[Array, " N"], *, bound: bool = True
) -> Float[Array, "N P"]:
    """Gates of the continuous slots, ``γ``'s interval, the scale's shift and (``bound``, with
    ``min_separation``) its lower bound."""
    t = encoder.tables
    g = group_index(encoder, x)
    letters, is_letter = site_letters(encoder, x)
    free = jnp.asarray(t["free"])[g, letters]  # [S]
    slot = jnp.arange(3)
    coordinate_on = (is_letter[:, None] & (slot[None, :] < free[:, None])).reshape(-1)
    lattice_on = jnp.asarray(t["lattice"])[g]
    on = jnp.concatenate([coordinate_on, lattice_on])
    gates = jnp.where(on, 1.0, -1.0).astype(params.dtype)
    params = params.at[encoder.coordinate_start :, 0].set(gates)
    params = _set_gamma_interval(encoder, params, x)
    atoms = jnp.sum(jnp.where(is_letter, jnp.asarray(t["mult"])[g, letters], 0))
    shift = jnp.log(jnp.maximum(atoms, 1).astype(params.dtype)) / 3
    m, scale = encoder.lattice_components, encoder.scale_position
    params = params.at[scale, 1 + m : 1 + 2 * m].add(shift)
    if bound and encoder.min_separation is not None:
        params = params.at[scale, 0].set(_log_lower(encoder, x).astype(params.dtype))
    return params


def _set_gamma_interval(encoder: CrystalEncoder, params: Float[Array, "N P"], x: Float[Array, " N"]):
    """``γ``'s interval ``(l, u)`` from ``α, β`` (raw parameters 1 and 2 after the gate); ``(0, 180)`` where
    ``α, β`` are not angles (the rows of a decoding step that are not yet drawn)."""
    alpha, beta = x[encoder.lattice_start + 2], x[encoder.lattice_start + 3]
    low = jnp.abs(alpha - beta)
    high = jnp.minimum(alpha + beta, 360.0 - alpha - beta)
    angles = (alpha > 0) & (alpha < 180) & (beta > 0) & (beta < 180)
    low, high = jnp.where(angles, low, 0.0), jnp.where(angles, high, 180.0)
    gamma = encoder.lattice_start + 4
    return params.at[gamma, 1].set(low.astype(params.dtype)).at[gamma, 2].set(high.astype(params.dtype))


def _log_lower(encoder: CrystalEncoder, x: Float[Array, " N"]) -> Float[Array, ""]:
    """``ln`` of the smallest valid scale ``a`` given every other value of ``x``, raised by ``_ROUNDING_MARGIN``."""
    lower = minimum_scale(encoder, x, min_separation=encoder.min_separation, min_volume=encoder.min_volume)
    return jnp.log(lower) + _ROUNDING_MARGIN


# A scale drawn at the bound itself (a bound far in the mixture's tail) must stay valid after float32 rounding of
# the bound and of the distances measured from it (relative errors up to 3e-7 seen): cut 1e-5 above it.
_ROUNDING_MARGIN = 1e-5
