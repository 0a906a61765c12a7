"""Ising models on two-dimensional lattices, with exact references.

Spins are tokens x ∈ {0, 1} mapped to s = 2x - 1 ∈ {-1, +1}; sites are in raster order,
site index = row * L + col. With periodic boundaries every site has bonds to its right and
down neighbours (and, on the triangular lattice, its down-right neighbour) modulo L, so there
are exactly 2N (3N) bonds. For L = 2 this counts each physical pair twice; Kaufman's torus
formula counts bonds the same way, so enumeration and the closed form agree for every L ≥ 2.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from arjax.targets.energy import (
    MAX_ENUMERATION_STATES,
    AbstractTarget,
    _checked_beta,
    _checked_int,
    _checked_tokens,
)

__all__ = [
    "BETA_CRITICAL",
    "WANNIER_RESIDUAL_ENTROPY",
    "IsingSquare",
    "IsingTriangular",
    "onsager_free_energy_per_site",
]

BETA_CRITICAL = 0.5 * math.log1p(math.sqrt(2.0))
"""Critical inverse temperature β_c = ln(1 + √2) / 2 ≈ 0.4407 of the square lattice (J = 1)."""

WANNIER_RESIDUAL_ENTROPY = 0.3230659472194505
"""Ground-state entropy per site of the triangular Ising antiferromagnet, N → ∞.

S_0 / N = (2/π) ∫_0^{π/3} ln(2 cos ω) dω = Cl_2(π/3) / π ≈ 0.3230659472
(G. H. Wannier, Phys. Rev. 79, 357 (1950); erratum Phys. Rev. B 7, 5017 (1973)).
"""

_SQUARE_SHIFTS = ((0, 1), (1, 0))
_TRIANGULAR_SHIFTS = ((0, 1), (1, 0), (1, 1))


class IsingSquare(AbstractTarget):
    """Ising model on an L×L square lattice: E(s) = -J Σ_<ij> s_i s_j - h Σ_i s_i.

    Bonds join each site to its right and down neighbours, wrapping around when `periodic`
    (2N bonds; for L = 2 each pair appears twice, as in Kaufman's formula). J > 0 is the
    ferromagnet. `exact_log_partition` uses Kaufman's exact finite-size formula for periodic
    boundaries with h = 0 (any L), and enumeration otherwise (L ≤ 4).

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.targets import IsingSquare
        >>> target = IsingSquare(L=4, J=1.0)
        >>> float(target.energy(jnp.ones(16, dtype=jnp.int32)))  # all up: -2JN
        -32.0
        >>> round(target.exact_log_partition(0.5), 6)
        17.105367
    """

    L: int = eqx.field(static=True)
    J: float = eqx.field(static=True)
    h: float = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(self, L: int, J: float = 1.0, h: float = 0.0, periodic: bool = True):
        self.L = _checked_int("L", L, minimum=2)
        self.J = _checked_real("J", J)
        self.h = _checked_real("h", h)
        self.periodic = bool(periodic)
        self.num_positions = self.L * self.L
        self.num_categories = 2

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """E(s) = -J Σ_<ij> s_i s_j - h Σ_i s_i for one configuration of L*L tokens."""
        s = _spins(_checked_tokens(x, self.num_positions), self.L)
        bonds = _bond_sum(s, _SQUARE_SHIFTS, self.periodic)
        return -self.J * bonds - self.h * jnp.sum(s)

    def exact_log_partition(self, beta: float) -> float:
        """Exact ln Z(β): Kaufman (1949) for periodic boundaries and h = 0, else enumeration.

        Z = ½ (2 sinh 2K)^{N/2} [Π_r 2cosh(Lγ_{2r+1}/2) + Π_r 2sinh(Lγ_{2r+1}/2)
        + Π_r 2cosh(Lγ_{2r}/2) + Π_r 2sinh(Lγ_{2r}/2)], r = 0..L-1, with K = βJ,
        cosh γ_k = cosh 2K coth 2K - cos(πk/L) and γ_0 = 2K + ln tanh K, which is negative
        above T_c (B. Kaufman, Phys. Rev. 76, 1232 (1949); P. D. Beale, PRL 76, 78 (1996)).
        Evaluated in float64 log space. J < 0 maps to |J| when the lattice is bipartite.

        Example:
            >>> from arjax.targets import IsingSquare
            >>> round(IsingSquare(L=2).exact_log_partition(0.3), 6)
            3.533038
        """
        beta = _checked_beta(beta)
        if self.J == 0.0:
            return self.num_positions * _log_2cosh(beta * self.h)
        bipartite = self.J > 0 or self.L % 2 == 0
        if self.periodic and self.h == 0.0 and bipartite:
            return _kaufman_log_partition(self.L, beta * abs(self.J))
        if 2**self.num_positions > MAX_ENUMERATION_STATES:
            raise ValueError(
                "no closed form for ln Z with "
                f"periodic={self.periodic}, J={self.J}, h={self.h} on L={self.L} "
                "(Kaufman needs periodic boundaries, h = 0 and J > 0 or even L), and "
                "enumeration needs L*L ≤ 24"
            )
        return super().exact_log_partition(beta)


class IsingTriangular(AbstractTarget):
    """Ising model on a triangular lattice (L×L rhombus): E(s) = -J Σ_<ij> s_i s_j.

    Site (r, c) is bonded to (r, c+1), (r+1, c) and (r+1, c+1), wrapping around when
    `periodic` (3N bonds; for L = 2 each pair appears twice). The default J = -1 is the
    frustrated antiferromagnet, whose ground-state energy per site is J = -|J| whenever L is a
    multiple of 2 or 3, and whose residual entropy per site tends to `WANNIER_RESIDUAL_ENTROPY`.
    `exact_log_partition` enumerates all states (L ≤ 4).

    Example:
        >>> import jax.numpy as jnp
        >>> from arjax.targets import IsingTriangular
        >>> target = IsingTriangular(L=3)
        >>> float(target.energy(jnp.ones(9, dtype=jnp.int32)))  # all up: +3|J|N
        27.0
        >>> target.ground_state_energy() / target.num_positions
        -1.0
    """

    L: int = eqx.field(static=True)
    J: float = eqx.field(static=True)
    periodic: bool = eqx.field(static=True)
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)

    def __init__(self, L: int, J: float = -1.0, periodic: bool = True):
        self.L = _checked_int("L", L, minimum=2)
        self.J = _checked_real("J", J)
        self.periodic = bool(periodic)
        self.num_positions = self.L * self.L
        self.num_categories = 2

    def energy(self, x: Int[ArrayLike, " N"]) -> Float[Array, ""]:
        """E(s) = -J Σ_<ij> s_i s_j for one configuration of L*L tokens."""
        s = _spins(_checked_tokens(x, self.num_positions), self.L)
        return -self.J * _bond_sum(s, _TRIANGULAR_SHIFTS, self.periodic)


def onsager_free_energy_per_site(beta: float, J: float = 1.0) -> float:
    """Onsager's free energy per site f(β) of the square-lattice Ising model as N → ∞ (h = 0).

    -βf = ln(2 cosh 2K) + (1/π) ∫_0^{π/2} ln[(1 + √(1 - κ² sin²θ)) / 2] dθ,
    K = β|J|, κ = 2 sinh 2K / cosh² 2K (L. Onsager, Phys. Rev. 65, 117 (1944)), integrated
    with Gauss–Legendre panels graded towards θ = π/2, where the integrand is singular at T_c.

    Example:
        >>> from arjax.targets import BETA_CRITICAL, onsager_free_energy_per_site
        >>> round(-BETA_CRITICAL * onsager_free_energy_per_site(BETA_CRITICAL), 10)
        0.9296953983
    """
    beta = _checked_beta(beta)
    k = beta * abs(_checked_real("J", J))
    sinh2k, cosh2k = np.sinh(2 * k), np.cosh(2 * k)
    kappa = 2 * sinh2k / cosh2k**2
    one_minus_kappa_sq = ((sinh2k - 1) / cosh2k) ** 2 * (1 + kappa)
    t, w = _graded_gauss_legendre(np.pi / 2)
    root = np.sqrt(one_minus_kappa_sq + kappa**2 * np.sin(t) ** 2)
    integral = np.sum(w * np.log1p(root)) - np.log(2) * np.pi / 2
    return float(-(_log_2cosh(2 * k) + integral / np.pi) / beta)


def _spins(x: Int[Array, " N"], L: int) -> Int[Array, "L L"]:
    return (2 * x.astype(jnp.int32) - 1).reshape(L, L)


def _bond_sum(s, shifts, periodic):
    L = s.shape[0]
    total = 0
    for dr, dc in shifts:
        if periodic:
            total += jnp.sum(s * jnp.roll(s, (-dr, -dc), axis=(0, 1)))
        else:
            total += jnp.sum(s[: L - dr, : L - dc] * s[dr:, dc:])
    return total


def _kaufman_log_partition(L: int, k: float) -> float:
    """Kaufman's ln Z on the L×L torus at coupling k = βJ > 0, in float64 log space.

    Uses cosh γ_k - 1 = 2 sinh²(K - K*) + 2 sin²(πk / 2L), with the dual coupling
    K* = -½ ln tanh K (so sinh 2K sinh 2K* = 1), to keep γ_k accurate near 0; only the
    product containing 2 sinh(Lγ_0/2) can be negative.
    """
    k_dual = -0.5 * (np.log(-np.expm1(-2 * k)) - np.log1p(np.exp(-2 * k)))
    c = 2 * np.sinh(k - k_dual) ** 2 + 2 * np.sin(np.pi * np.arange(2 * L) / (2 * L)) ** 2
    gamma = np.log1p(c + np.sqrt(c * (c + 2)))
    gamma[0] = 2 * (k - k_dual)
    half = L * gamma / 2
    with np.errstate(divide="ignore"):
        log_2sinh = np.abs(half) + np.log(-np.expm1(-2 * np.abs(half)))
    log_2cosh = _log_2cosh(half)
    odd, even = slice(1, None, 2), slice(0, None, 2)
    logs = np.array(
        [log_2cosh[odd].sum(), log_2sinh[odd].sum(), log_2cosh[even].sum(), log_2sinh[even].sum()]
    )
    signs = np.array([1.0, 1.0, 1.0, np.prod(np.sign(half[even]))])
    top = logs.max()
    log_sum = top + np.log(np.sum(signs * np.exp(logs - top)))
    log_2sinh_2k = 2 * k + np.log(-np.expm1(-4 * k))
    return float(-np.log(2) + L * L / 2 * log_2sinh_2k + log_sum)


def _log_2cosh(x):
    return np.abs(x) + np.log1p(np.exp(-2 * np.abs(x)))


def _graded_gauss_legendre(width: float, levels: int = 50, order: int = 20):
    """Nodes and weights on [0, width], with panels halving in size towards 0."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.concatenate([[0.0], width * 0.5 ** np.arange(levels, -1, -1)])
    lo, hi = edges[:-1, None], edges[1:, None]
    return ((lo + hi) / 2 + (hi - lo) / 2 * x).ravel(), ((hi - lo) / 2 * w).ravel()


def _checked_real(name: str, value: float) -> float:
    try:
        value = float(value)
    except TypeError:
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value
