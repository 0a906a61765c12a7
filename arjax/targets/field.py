"""Scalar lattice fields: a real value per site of a periodic L×L lattice, ``p(φ) ∝ exp(-β S(φ))``.

Sites are in raster order (site = row · L + col), like the Ising targets. The action's gradient
term joins each site to its right and down neighbours, wrapping around, so it reads
``½ Σ_x Σ_μ (φ(x+μ̂) - φ(x))² = ½ φᵀ(-Δ)φ`` with the periodic lattice Laplacian ``Δ``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from arjax.targets.energy import _checked_beta, _checked_int

__all__ = ["FreeScalarField", "Phi4"]


class _LatticeField(eqx.Module):
    """What the free and the interacting field share: the lattice and the gradient term."""

    L: int = eqx.field(static=True)

    @property
    def num_positions(self) -> int:
        return self.L * self.L

    @property
    def num_categories(self) -> None:
        """``None``: the values are real numbers, not tokens."""
        return None

    def energies(self, phi: Float[ArrayLike, "*batch N"]) -> Float[Array, "*batch"]:
        """Actions of fields with any leading batch shape."""
        phi = jnp.asarray(phi)
        if phi.ndim < 1 or phi.shape[-1] != self.num_positions:
            raise ValueError(f"phi must have shape (..., {self.num_positions}), got shape {phi.shape}")
        grid = phi.reshape(phi.shape[:-1] + (self.L, self.L))
        return self._local(grid) + self._gradient(grid)

    def energy(self, phi: Float[ArrayLike, " N"]) -> Float[Array, ""]:
        """The action ``S(φ)`` of one field of ``L·L`` real values."""
        phi = jnp.asarray(phi)
        if phi.shape != (self.num_positions,):
            raise ValueError(f"phi must have shape ({self.num_positions},) (one field; batch with jax.vmap or use "
                             f".energies), got shape {phi.shape}")  # fmt: skip
        return self.energies(phi)

    def _gradient(self, grid):
        right = jnp.roll(grid, -1, axis=-1) - grid
        down = jnp.roll(grid, -1, axis=-2) - grid
        return 0.5 * jnp.sum(right**2 + down**2, axis=(-2, -1))


class FreeScalarField(_LatticeField):
    r"""Gaussian (free) field: ``S(φ) = ½ Σ_x [Σ_μ (φ(x+μ̂) - φ(x))² + m² φ(x)²] = ½ φᵀ A φ``, ``A = m² - Δ``.

    Exact: ``ln Z(β) = (N/2) ln(2π/β) - ½ Σ_k ln λ_k`` with the eigenvalues
    ``λ_k = m² + 4 sin²(π k_1/L) + 4 sin²(π k_2/L)`` of ``A`` (plane waves diagonalise the periodic
    Laplacian), so ``F = -ln Z / β`` is known for every ``L``. A depth-0 ``MADE`` with
    ``GaussianMixture(1)`` represents ``p(φ)`` exactly (its Cholesky factorisation).

    Example:
        >>> import jax.numpy as jnp
        >>> field = FreeScalarField(L=4, mass=1.0)
        >>> float(field.energy(jnp.ones(16)))    # only the mass term: ½ · 16 · 1
        8.0
        >>> round(field.exact_log_partition(1.0), 4)
        2.687
    """

    mass: float = eqx.field(static=True)

    def __init__(self, L: int, mass: float):
        self.L = _checked_int("L", L, minimum=1)
        mass = float(mass)
        if not (math.isfinite(mass) and mass > 0):
            raise ValueError(f"mass must be a finite number > 0 (m = 0 has a zero mode and no partition function), "
                             f"got {mass!r}")  # fmt: skip
        self.mass = mass

    def _local(self, grid):
        return 0.5 * self.mass**2 * jnp.sum(grid**2, axis=(-2, -1))

    def eigenvalues(self) -> np.ndarray:
        """The ``L²`` eigenvalues of ``A = m² - Δ`` (float64)."""
        s = 4 * np.sin(np.pi * np.arange(self.L) / self.L) ** 2
        return (self.mass**2 + s[:, None] + s[None, :]).reshape(-1)

    def exact_log_partition(self, beta: float) -> float:
        beta = _checked_beta(beta)
        n = self.num_positions
        return float(0.5 * n * math.log(2 * math.pi / beta) - 0.5 * np.sum(np.log(self.eigenvalues())))

    def exact_free_energy(self, beta: float) -> float:
        """``F = -ln Z / β`` of the whole lattice."""
        return -self.exact_log_partition(beta) / _checked_beta(beta)


class Phi4(_LatticeField):
    r"""Interacting φ⁴ field: ``S(φ) = Σ_x [½ Σ_μ (φ(x+μ̂) - φ(x))² + ½ m² φ(x)² + λ φ(x)⁴]``.

    ``mass_squared`` may be negative (a double well at each site, the broken phase for small
    ``λ``); ``coupling`` ``λ > 0`` keeps ``Z`` finite. No closed form; ``FreeScalarField`` is the
    ``λ → 0`` limit for ``m² > 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> field = Phi4(L=2, mass_squared=-1.0, coupling=0.25)
        >>> float(field.energy(jnp.ones(4)))     # 4 · (-½ + ¼)
        -1.0
    """

    mass_squared: float = eqx.field(static=True)
    coupling: float = eqx.field(static=True)

    def __init__(self, L: int, mass_squared: float, coupling: float):
        self.L = _checked_int("L", L, minimum=1)
        mass_squared, coupling = float(mass_squared), float(coupling)
        if not math.isfinite(mass_squared):
            raise ValueError(f"mass_squared must be a finite number, got {mass_squared!r}")
        if not (math.isfinite(coupling) and coupling > 0):
            raise ValueError(
                f"coupling must be a finite number > 0 (λ ≤ 0 has no partition function), got {coupling!r}"
            )
        self.mass_squared = mass_squared
        self.coupling = coupling

    def _local(self, grid):
        squared = grid**2
        return jnp.sum(0.5 * self.mass_squared * squared + self.coupling * squared**2, axis=(-2, -1))
