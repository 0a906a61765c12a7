"""Inverse design with the mixed crystal model: its exact skeleton marginal as a token model, and geometry
completion.

Because ``CrystalEncoder`` puts the skeleton (group, letters, elements) before the geometry, the
first ``2S + 1`` conditionals of a ``CrystalTransformer`` are the exact marginal
``p(group, letters, elements)``. ``SkeletonNet`` exposes them as an ordinary token net, so
``arjax.Autoregressive(SkeletonNet(net), allowed=encoder.allowed)`` is a token distribution that
``arjax.mcmc.cloze``, ``arjax.mcmc.independence`` and ``arjax.train.fit_reward`` take as they are;
``complete_geometry`` then draws the coordinates and lattice of given skeletons from the full model.
``validity_reward`` scores whole sequences for ``fit_reward``, and ``FrozenSkeleton`` lets such a
fine-tuning change only the geometry conditionals, keeping the skeleton distribution learned from data.
``sample_valid`` draws the model conditioned on structural validity exactly, by rejection.
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.crystal.net import CrystalTransformer
from arjax.distribution import Autoregressive
from arjax.families.layout import net_layout

__all__ = [
    "FrozenSkeleton", "SkeletonNet", "ValidSamples", "complete_geometry", "sample_valid", "skeleton_template",
    "structurally_valid_rows", "validity_reward",
]  # fmt: skip


class SkeletonNet(eqx.Module):
    """The skeleton part of a ``CrystalTransformer`` as a token net over ``2S + 1`` positions.

    ``net(tokens) -> [2S + 1, K]`` logits, row ``i`` reading ``tokens[:i]``: the full net's rows of
    the skeleton positions (the geometry slots it pads with come later and cannot affect them).
    The weights are the full net's, so fine-tuning this view fine-tunes the crystal model.

    Example:
        >>> import jax
        >>> from arjax import Autoregressive
        >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> view = SkeletonNet(CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0)))
        >>> p = Autoregressive(view, allowed=enc.allowed)
        >>> x = p.sample(jax.random.key(1), (3,))
        >>> x.shape, x.dtype
        ((3, 5), dtype('int32'))
    """

    crystal: CrystalTransformer
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(self, crystal: CrystalTransformer):
        if not isinstance(crystal, CrystalTransformer):
            raise TypeError(f"crystal must be a CrystalTransformer, got {type(crystal).__name__}")
        self.crystal = crystal
        self.num_positions = crystal.encoder.coordinate_start
        self.num_categories = crystal.encoder.num_categories

    def __call__(self, x: Int[Array, " M"], context: None = None) -> Float[Array, "M K"]:
        encoder = self.crystal.encoder
        full = _padded(encoder, jnp.asarray(x))
        return self.crystal(full)[: self.num_positions, : encoder.num_categories]


class FrozenSkeleton(eqx.Module):
    """A crystal net with the skeleton conditionals of ``skeleton`` (held fixed) and the geometry ones of ``geometry``.

    Rows ``i < 2S + 1`` (group, letters, elements) are ``skeleton``'s, behind ``stop_gradient``, and
    the coordinate and lattice rows are ``geometry``'s, so ``q(x) = p(skeleton) q(geometry | skeleton)``.
    Fine-tuning ``FrozenSkeleton(net, net)`` (``fit_reward``, ``fit_mle``) changes only how geometry
    is drawn; with ``prior = net`` the KL is ``E_p(s)[KL(q(g | s) ‖ p(g | s))]``. Both parts decode
    with their KV caches, so sampling stays one pass.

    Example:
        >>> import jax
        >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
        >>> x = jnp.asarray(enc.encode("225-a-Na-b-Cl-X-5.64"), jnp.float32)
        >>> bool(jnp.array_equal(FrozenSkeleton(net, net)(x), net(x)))
        True
    """

    skeleton: CrystalTransformer
    geometry: CrystalTransformer

    def __init__(self, skeleton: CrystalTransformer, geometry: CrystalTransformer):
        for name, net in (("skeleton", skeleton), ("geometry", geometry)):
            if not isinstance(net, CrystalTransformer):
                raise TypeError(f"{name} must be a CrystalTransformer, got {type(net).__name__}")
        if skeleton.encoder != geometry.encoder:
            raise ValueError("skeleton and geometry must be CrystalTransformers of the same encoder")
        self.skeleton, self.geometry = skeleton, geometry

    @property
    def encoder(self):
        return self.skeleton.encoder

    @property
    def num_positions(self) -> int:
        return self.skeleton.num_positions

    @property
    def families(self) -> tuple:
        return self.skeleton.families

    num_categories = None
    context_shape = None

    def __call__(self, x: Float[Array, " N"], context: None = None) -> Float[Array, "N P"]:
        m = self.encoder.coordinate_start
        fixed = jax.lax.stop_gradient(self.skeleton(x, context))
        return jnp.concatenate([fixed[:m], self.geometry(x, context)[m:]])

    def init_cache(self, context: None = None) -> tuple:
        return self.skeleton.init_cache(context), self.geometry.init_cache(context)

    def decode_step(self, cache: tuple, i, token) -> tuple[Float[Array, " P"], tuple]:
        fixed, skeleton_cache = self.skeleton.decode_step(cache[0], i, token)
        tuned, geometry_cache = self.geometry.decode_step(cache[1], i, token)
        params = jnp.where(jnp.asarray(i) < self.encoder.coordinate_start, jax.lax.stop_gradient(fixed), tuned)
        return params, (skeleton_cache, geometry_cache)


def complete_geometry(
    net: CrystalTransformer, skeletons: Int[Array, "B M"], *, key: PRNGKeyArray
) -> Float[Array, "B N"]:
    """Full sequences: each skeleton (``2S + 1`` tokens) followed by coordinates and lattice drawn from ``net``.

    The geometry is an exact sample of ``p(coordinates, lattice | skeleton)`` (the cached decoder,
    skeleton tokens forced).

    Example:
        >>> import jax
        >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> net = CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(0))
        >>> skeleton = enc.encode("225-a-Na-e-Cl-0.25-X-5.6")[: enc.coordinate_start].astype(int)
        >>> x = complete_geometry(net, skeleton[None], key=jax.random.key(1))
        >>> enc.decode(x[0]).sites[1].letter, enc.decode(x[0]).sites[1].element
        ('e', 'Cl')
    """
    skeletons = jnp.asarray(skeletons)
    return _complete(net, skeletons, jax.random.split(key, skeletons.shape[0]))


def skeleton_template(encoder, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of a skeleton template such as ``"225-a-?-b-?-c-?-e-O"`` and the positions of its ``?``.

    The template lists the space group and then ``letter-element`` pairs in the order the encoder
    sorts sites (by letter); ``?`` stands for an element. The placeholders are set to the first
    element of the vocabulary.

    >>> from arjax.crystal import CrystalEncoder
    >>> enc = CrystalEncoder(space_groups=[225], elements=["O", "Sr", "Ti"], max_sites=4)
    >>> tokens, holes = skeleton_template(enc, "225-a-?-b-?-c-Sr-e-O")
    >>> [enc.vocabulary[t] for t in tokens], holes.tolist()
    (['sg:225', 'w:a', 'el:O', 'w:b', 'el:O', 'w:c', 'el:Sr', 'w:e', 'el:O'], [2, 4])
    """
    parts = [p.strip() for p in text.split("-")]
    if len(parts) % 2 != 1 or len(parts) < 3:
        raise ValueError(f"template {text!r}: expected 'group-letter-element-…' with ? for elements")
    g = int(parts[0])
    if g not in encoder.space_groups:
        raise ValueError(f"template {text!r}: space group {g} is not in the vocabulary")
    from arjax.crystal.encoder import END
    from arjax.crystal.wyckoff import wyckoff_letters

    letters = wyckoff_letters(g)
    num_sites = (len(parts) - 1) // 2
    if num_sites > encoder.max_sites:
        raise ValueError(f"template {text!r}: {num_sites} sites, more than max_sites={encoder.max_sites}")
    tokens = np.zeros(encoder.coordinate_start, np.int32)
    tokens[0] = encoder.group_start + encoder.space_groups.index(g)
    holes = []
    for s in range(num_sites):
        letter, element = parts[1 + 2 * s], parts[2 + 2 * s]
        if letter not in letters:
            raise ValueError(f"template {text!r}: space group {g} has no Wyckoff letter {letter!r}")
        tokens[1 + 2 * s] = encoder.letter_start + letters.index(letter)
        if element == "?":
            holes.append(2 + 2 * s)
            tokens[2 + 2 * s] = encoder.element_start
        elif element in encoder.elements:
            tokens[2 + 2 * s] = encoder.element_start + encoder.elements.index(element)
        else:
            raise ValueError(f"template {text!r}: element {element!r} is not in the vocabulary")
    if num_sites < encoder.max_sites:
        tokens[1 + 2 * num_sites] = END
    return tokens, np.array(holes, np.int32)


def validity_reward(
    encoder, *, penalty: float = 10.0, min_separation: float = 0.5, min_volume: float = 0.1
) -> Callable[[Float[Array, " N"]], Float[Array, ""]]:
    r"""``r(x) = -penalty`` when the crystal of sequence ``x`` is not structurally valid, else 0, for ``fit_reward``.

    Structural validity is ``metrics.structurally_valid`` (every distance ≥ ``min_separation`` Å,
    volume ≥ ``min_volume`` Å³) of the decoded atoms; a sequence that does not decode counts as
    invalid. The check runs on the host (``jax.pure_callback``, the whole batch in one call), so the
    reward works inside ``jit`` and ``vmap`` but has no gradient — which the score-function
    estimator of ``fit_reward`` does not need. With KL weight ``τ`` toward the pretrained model
    ``p`` the optimum of ``fit_reward`` is ``p(x) e^{r(x)/τ} / Z``, which tends to ``p(x | valid)``
    as ``penalty / τ`` grows.

    Example:
        >>> from arjax.crystal import CrystalEncoder
        >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
        >>> reward = validity_reward(enc)
        >>> float(reward(enc.encode("225-a-Na-b-Cl-X-5.64"))), float(reward(enc.encode("225-a-Na-b-Cl-X-0.8")))
        (0.0, -10.0)
    """
    if not 0 < float(penalty) < float("inf"):
        raise ValueError(f"penalty must be a finite number > 0, got {penalty!r}")
    n = encoder.num_positions

    def host(x):
        x = np.asarray(x)
        valid = structurally_valid_rows(encoder, x.reshape(-1, n), min_separation=min_separation,
                                        min_volume=min_volume)  # fmt: skip
        return np.where(valid, 0.0, -float(penalty)).astype(np.float32).reshape(x.shape[:-1])

    def reward(x: Float[Array, " N"]) -> Float[Array, ""]:
        x = jnp.asarray(x)
        if x.shape[-1:] != (n,):
            raise ValueError(f"x must be a sequence of the encoder's {n} positions, got shape {x.shape}")
        return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32), x, vmap_method="expand_dims")

    return reward


def structurally_valid_rows(
    encoder, x: Float[np.ndarray, "B N"], *, min_separation: float = 0.5, min_volume: float = 0.1
) -> np.ndarray:
    """``metrics.structurally_valid`` of each row's decoded crystal; a row that does not decode is invalid.

    >>> from arjax.crystal import CrystalEncoder
    >>> enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
    >>> structurally_valid_rows(enc, enc.encode_batch(["225-a-Na-b-Cl-X-5.64", "225-a-Na-b-Cl-X-0.8"])).tolist()
    [True, False]
    """
    from arjax.crystal import metrics
    from arjax.crystal.structure import to_structure

    def valid(row) -> bool:
        try:
            structure = to_structure(encoder.decode(row))
        except ValueError:
            return False
        return metrics.structurally_valid(structure, min_separation=min_separation, min_volume=min_volume)

    return np.array([valid(row) for row in np.asarray(x)], bool)


class ValidSamples(NamedTuple):
    """What ``sample_valid`` returns.

    Attributes:
        x: ``[num_samples, N]`` exact samples of ``p(x | valid)``.
        accepted: how many of the drawn samples were valid (all, not only those returned).
        drawn: how many were drawn; ``accepted / drawn`` estimates ``P(valid)`` under the model, and
            ``ln p(x | valid) = ln p(x) - ln P(valid)`` for a valid ``x``.
    """

    x: np.ndarray
    accepted: int
    drawn: int


def sample_valid(
    model: Autoregressive, key: PRNGKeyArray, num_samples: int, *, batch_size: int = 250, max_batches: int = 1000,
    min_separation: float = 0.5, min_volume: float = 0.1,
) -> ValidSamples:  # fmt: skip
    r"""Exact samples of the crystal model conditioned on structural validity, ``p(x | valid) ∝ p(x) 1[valid(x)]``.

    Rejection sampling with the model itself as the proposal: batches of ``batch_size`` exact samples
    (keys ``fold_in(key, b)``) are drawn and the structurally valid ones (``structurally_valid_rows``)
    kept, in order, until ``num_samples`` are collected. Every accepted sample is an exact draw of the
    conditional, the expected cost is ``1 / P(valid)`` draws per sample, and the same key gives the
    same samples. This is the distribution the validity fine-tuning (``validity_reward`` with KL toward
    ``p``) approaches as its penalty grows, reached exactly; it is the posterior of ``p`` given the
    observation "valid" (likelihood ``1[valid(x)]``).

    Args:
        model: an ``arjax.Autoregressive`` over a ``CrystalEncoder``'s sequences (its net has ``encoder``).
        max_batches: give up (``RuntimeError``) after this many batches without ``num_samples``.

    Example:
        >>> import jax
        >>> from arjax import Autoregressive
        >>> from arjax.crystal import CrystalEncoder, CrystalTransformer
        >>> enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=2, max_atoms=8)
        >>> model = Autoregressive(CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1,
        ...                                           key=jax.random.key(0)), allowed=enc.allowed)
        >>> out = sample_valid(model, jax.random.key(1), 5, batch_size=8)
        >>> out.x.shape, bool(structurally_valid_rows(enc, out.x).all()), out.accepted <= out.drawn
        ((5, 17), True, True)
    """
    encoder = getattr(model.net, "encoder", None)
    if encoder is None:
        raise TypeError(f"model must be an arjax.Autoregressive over a crystal net with an encoder, got {model!r}")
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size), ("max_batches", max_batches)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    kept, accepted, drawn = [], 0, 0
    for b in range(max_batches):
        x = np.asarray(model.sample(jax.random.fold_in(key, b), (batch_size,)))  # compiled once per shape
        valid = structurally_valid_rows(encoder, x, min_separation=min_separation, min_volume=min_volume)
        kept.append(x[valid])
        accepted, drawn = accepted + int(valid.sum()), drawn + batch_size
        if accepted >= num_samples:
            return ValidSamples(np.concatenate(kept)[:num_samples], accepted, drawn)
    raise RuntimeError(f"sample_valid: {accepted} valid crystals in {drawn} draws, fewer than num_samples="
                       f"{num_samples}; the model puts P(valid) ≈ {accepted / drawn:.2g}")  # fmt: skip


def _padded(encoder, tokens: Int[Array, " M"]) -> Float[Array, " N"]:
    dtype = jnp.result_type(float)
    geometry = jnp.asarray([f.feasible_value() for f in encoder.families[encoder.coordinate_start :]], dtype)
    return jnp.concatenate([tokens.astype(dtype), geometry])


@eqx.filter_jit
def _complete(net, skeletons, keys):
    layout = net_layout(net)
    encoder = net.encoder
    n, m = net.num_positions, encoder.coordinate_start

    def one(skeleton, key):
        uniforms = jax.random.uniform(key, (n, layout.num_uniforms))
        forced = _padded(encoder, skeleton).astype(layout.value_dtype)

        def step(carry, i):
            cache, previous, x = carry
            params, cache = net.decode_step(cache, i, previous)
            drawn, _ = layout.sample_at(i, params, uniforms[i], None)
            value = jnp.where(i < m, forced[i], drawn)
            return (cache, value, x.at[i].set(value)), None

        init = (net.init_cache(), jnp.zeros((), layout.value_dtype), jnp.zeros(n, layout.value_dtype))
        (_, _, x), _ = lax.scan(step, init, jnp.arange(n))
        return x

    return jax.vmap(one)(skeletons, keys)
