"""``FamilyLayout``: which family each position has, and dispatch over positions of mixed families.

Nets output one padded row of ``num_params = max_i P_i`` raw parameters per position; a value
enters a net as one padded row of ``num_features = max_i F_i`` features. With a single family
the dispatch is a plain ``vmap``; with several, whole-sequence operations loop over the distinct
families (static position groups) and single-position ones (position ``i`` traced, as in a
``lax.scan``) go through ``lax.switch``.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from numpyro.distributions import constraints

from arjax.families.base import Family
from arjax.families.categorical import Categorical
from arjax.families.normal_mixtures import GaussianMixture, LogNormalMixture
from arjax.families.von_mises import VonMisesMixture

__all__ = ["FamilyLayout", "resolve_families", "family_from_config", "layout_of", "net_layout", "FAMILIES"]

FAMILIES = {cls.name: cls for cls in (Categorical, GaussianMixture, LogNormalMixture, VonMisesMixture)}


def resolve_families(num_positions: int, num_categories: int | None, families) -> tuple[Family, ...]:
    """The ``N`` families of a net from its ``num_categories=K`` shorthand or its ``families=`` argument.

    ``families`` is one ``Family`` for every position or a sequence of ``N`` of them.

    >>> resolve_families(2, None, GaussianMixture(3))
    (GaussianMixture(components=3, scale_floor=0.001), GaussianMixture(components=3, scale_floor=0.001))
    """
    if (num_categories is None) == (families is None):
        raise ValueError(
            "give exactly one of num_categories=K (every position a token in 0..K-1) and families= "
            f"(one family or a sequence of {num_positions}), got num_categories={num_categories!r}, "
            f"families={families!r}"
        )
    if families is None:
        return (Categorical(int(num_categories)),) * num_positions
    if isinstance(families, Family):
        return (families,) * num_positions
    if isinstance(families, (str, bytes)) or not isinstance(families, Sequence):
        raise TypeError(f"families must be a Family (e.g. arjax.families.GaussianMixture(4)) or a sequence of "
                        f"{num_positions} of them, got {families!r}")
    families = tuple(families)
    if len(families) != num_positions:
        raise ValueError(f"families must hold one family per position: {num_positions}, got {len(families)}")
    unknown = [f"{i}: {f!r}" for i, f in enumerate(families) if not isinstance(f, Family)]
    if unknown:
        raise TypeError(
            f"families must be arjax.families.Family objects; unknown at positions {', '.join(unknown[:5])}"
        )
    return families


def family_from_config(config: dict) -> Family:
    """Inverse of ``Family.config()``.

    >>> family_from_config(VonMisesMixture(4).config())
    VonMisesMixture(components=4, concentration_floor=0.001, num_frequencies=3)
    """
    fields = dict(config)
    name = fields.pop("family", None)
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name](**fields)


class FamilyLayout:
    """The families of a sequence and the padded layout of parameters and features over positions.

    Attributes:
        families: one ``Family`` per position.
        distinct: the distinct families, in order of first appearance.
        index: ``int[N]``, position ``i`` has family ``distinct[index[i]]``.
        num_params: padded parameter row width ``max_i P_i``.
        num_features: padded feature row width ``max_i F_i``.
        num_uniforms: uniforms drawn per position, ``max_i U_i``.

    Example:
        >>> layout = FamilyLayout((Categorical(3), GaussianMixture(2), Categorical(3)))
        >>> layout.num_params, layout.num_features, layout.index.tolist()
        (6, 3, [0, 1, 0])
    """

    def __init__(self, families: tuple[Family, ...]):
        self.families = tuple(families)
        self.distinct = tuple(dict.fromkeys(self.families))
        self.index = np.array([self.distinct.index(f) for f in self.families], np.int32)
        self.groups = tuple(np.flatnonzero(self.index == g) for g in range(len(self.distinct)))
        self.num_positions = len(self.families)
        self.num_params = max(f.num_params for f in self.distinct)
        self.num_features = max(f.num_features for f in self.distinct)
        self.num_uniforms = max(f.num_uniforms for f in self.distinct)
        self.is_categorical = np.array([isinstance(f, Categorical) for f in self.families])
        categorical = [f.num_categories for f in self.distinct if isinstance(f, Categorical)]
        self.categorical_size = max(categorical) if categorical else None
        self.all_categorical = bool(self.is_categorical.all())
        self.num_categories = categorical[0] if self.all_categorical and len(self.distinct) == 1 else None

    @property
    def value_dtype(self):
        """int32 for token-only sequences, else the default float type (tokens stored as exact integers)."""
        return jnp.int32 if self.all_categorical else jnp.result_type(float)

    @functools.cached_property
    def support(self) -> constraints.Constraint:
        """NumPyro constraint of a whole sequence (event_dim 1)."""
        if len(self.distinct) == 1:
            base = self.distinct[0].support
            if base is constraints.real:
                return constraints.real_vector
            return constraints.independent(base, 1)
        runs, lengths = [], []
        for family in self.families:
            if runs and family.support == runs[-1]:
                lengths[-1] += 1
            else:
                runs.append(family.support)
                lengths.append(1)
        return constraints.independent(constraints.cat(runs, dim=-1, lengths=lengths), 1)

    @functools.cached_property
    def param_counts(self) -> np.ndarray:
        return np.array([f.num_params for f in self.families])

    @functools.cached_property
    def feature_counts(self) -> np.ndarray:
        return np.array([f.num_features for f in self.families])

    @functools.cached_property
    def ragged_features(self) -> np.ndarray:
        """Indices into the flattened ``[N * num_features]`` padded features of the ``Σ_i F_i`` real ones."""
        return np.concatenate([i * self.num_features + np.arange(f) for i, f in enumerate(self.feature_counts)])

    @functools.cached_property
    def feature_columns(self) -> np.ndarray:
        """``int[N, num_features]``: position ``i``'s features among the ``Σ F_i`` ragged ones (padding: ``Σ F_i``)."""
        return _padded_offsets(self.feature_counts, self.num_features)

    @functools.cached_property
    def param_rows(self) -> np.ndarray:
        """``int[N, num_params]``: position ``i``'s parameters among the ``Σ P_i`` ragged ones (padding: ``Σ P_i``)."""
        return _padded_offsets(self.param_counts, self.num_params)

    @functools.cached_property
    def shared_feature_rows(self) -> np.ndarray:
        """``int[N, num_features]``: position ``i``'s feature rows among those of the distinct families, each family's
        ``F`` rows stored once (padding: ``Σ_distinct F``)."""
        return self._shared_offsets([f.num_features for f in self.distinct], self.num_features)

    @functools.cached_property
    def shared_param_columns(self) -> np.ndarray:
        """``int[N, num_params]``: position ``i``'s parameters among those of the distinct families (padding:
        ``Σ_distinct P``)."""
        return self._shared_offsets([f.num_params for f in self.distinct], self.num_params)

    @functools.cached_property
    def shared_init_bias(self) -> np.ndarray:
        """The distinct families' ``init_bias``, concatenated (``Σ_distinct P``)."""
        return np.concatenate([f.init_bias() for f in self.distinct])

    def _shared_offsets(self, counts: list[int], width: int) -> np.ndarray:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[self.index]
        sizes = np.asarray(counts)[self.index]
        slots = np.arange(width)[None, :]
        return np.where(slots < sizes[:, None], starts[:, None] + slots, sum(counts)).astype(np.int32)

    @functools.cached_property
    def ragged_init_bias(self) -> np.ndarray:
        """The families' ``init_bias`` of every position, concatenated (``Σ_i P_i``)."""
        return np.concatenate([f.init_bias() for f in self.families])

    @functools.cached_property
    def feasible(self) -> np.ndarray:
        """A value inside every position's support (float64; cast on use)."""
        return np.array([f.feasible_value() for f in self.families])

    def in_support(self, x: Float[Array, "... N"]) -> Bool[Array, "... N"]:
        """Whether each position's value lies in its family's support (tokens: whole and in range)."""
        out = [(self.groups[g], f.support(x[..., self.groups[g]])) for g, f in enumerate(self.distinct)]
        return self._scatter(out, x.shape, bool, axis=-1)

    def log_probs(
        self,
        params: Float[Array, "N P"],
        x: Float[Array, " N"],
        allowed: Bool[Array, "N K"] | None = None,
        *,
        dead_ends: bool = False,
    ) -> Float[Array, " N"]:
        """``ln p(x_i | θ_i)`` of every position (``allowed`` rows apply to token positions; with ``dead_ends``
        a row may allow no token, see ``arjax.allowed.allows_dead_ends``)."""
        out = []
        for g, family in enumerate(self.distinct):
            positions = self.groups[g]
            p = params[positions, : family.num_params]
            v = x[positions]
            if isinstance(family, Categorical) and allowed is not None:
                log_prob = functools.partial(family.log_prob, dead_ends=dead_ends)
                lp = jax.vmap(log_prob)(p, v, allowed[positions, : family.num_categories])
            else:
                lp = jax.vmap(family.log_prob)(p, v)
            out.append((positions, lp))
        return self._scatter(out, (self.num_positions,), params.dtype)

    def cdfs(self, params: Float[Array, "N P"], x: Float[Array, " N"]) -> Float[Array, " N"]:
        """``F_i(x_i | θ_i)`` of every position: the Rosenblatt transform of ``x``."""
        out = [(self.groups[g], jax.vmap(f.cdf)(params[self.groups[g], : f.num_params], x[self.groups[g]]))
               for g, f in enumerate(self.distinct)]  # fmt: skip
        return self._scatter(out, (self.num_positions,), params.dtype)

    def features(self, x: Float[Array, " N"], dtype) -> Float[Array, "N F"]:
        """Every position's value as its padded feature row."""
        out = []
        for g, family in enumerate(self.distinct):
            rows = jax.vmap(family.features)(x[self.groups[g]]).astype(dtype)
            out.append((self.groups[g], jnp.pad(rows, ((0, 0), (0, self.num_features - family.num_features)))))
        return self._scatter(out, (self.num_positions, self.num_features), dtype)

    def feature_at(self, i: Int[Array, ""], value: Float[Array, ""], dtype) -> Float[Array, " F"]:
        """The padded feature row of ``value`` at (traced) position ``i``."""

        def branch(family):
            return lambda v: jnp.pad(family.features(v).astype(dtype), (0, self.num_features - family.num_features))

        return self._switch(i, [branch(f) for f in self.distinct], value)

    def sample_at(
        self,
        i: Int[Array, ""],
        params: Float[Array, " P"],
        u: Float[Array, " U"],
        allowed: Bool[Array, " K"] | None,
        *,
        dead_ends: bool = False,
    ) -> tuple[Array, Float[Array, ""]]:
        """The value at (traced) position ``i`` drawn by the uniforms ``u``, and its log-probability."""

        def branch(family):
            def draw(p, u):
                p = p[: family.num_params]
                if isinstance(family, Categorical):
                    row = None if allowed is None else allowed[: family.num_categories]
                    value, log_p = family.sample_and_log_prob(p, u, row, dead_ends=dead_ends)
                else:
                    value = family.sample(p, u[: family.num_uniforms])
                    log_p = family.log_prob(p, value)
                return value.astype(self.value_dtype), log_p.astype(params.dtype)

            return draw

        return self._switch(i, [branch(f) for f in self.distinct], params, u)

    def _switch(self, i, branches, *operands):
        if len(branches) == 1:
            return branches[0](*operands)
        return jax.lax.switch(jnp.asarray(self.index)[i], branches, *operands)

    def _scatter(self, pieces, shape, dtype, axis=0):
        """Assemble per-family results, each along ``axis`` at its positions, into one array."""
        if len(pieces) == 1:
            return pieces[0][1]
        out = jnp.zeros(shape, dtype)
        axis = axis % len(shape)
        for positions, values in pieces:
            out = out.at[(slice(None),) * axis + (positions,)].set(values)
        return out


def _padded_offsets(counts: np.ndarray, width: int) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slots = np.arange(width)[None, :]
    return np.where(slots < counts[:, None], starts[:, None] + slots, counts.sum()).astype(np.int32)


@functools.lru_cache(maxsize=256)
def layout_of(families: tuple[Family, ...]) -> FamilyLayout:
    """The (cached) ``FamilyLayout`` of a tuple of families."""
    return FamilyLayout(families)


def net_layout(net) -> FamilyLayout:
    """The ``FamilyLayout`` of a net: its ``families``, or ``Categorical(num_categories)`` at every position.

    >>> import jax
    >>> from arjax.nn import MeanField
    >>> net_layout(MeanField(3, 2, key=jax.random.key(0))).num_categories
    2
    """
    families = getattr(net, "families", None)
    if families is None:
        families = (Categorical(int(net.num_categories)),) * int(net.num_positions)
    return layout_of(tuple(families))
