"""Boltzmann targets p(x) ∝ exp(-β E(x)) over token sequences and real lattice fields, with exact references."""

from arjax.targets.energy import (
    MAX_ENUMERATION_STATES,
    AbstractTarget,
    EnergyTarget,
    ground_state_by_enumeration,
    log_partition_by_enumeration,
)
from arjax.targets.field import FreeScalarField, Phi4
from arjax.targets.ising import (
    BETA_CRITICAL,
    WANNIER_RESIDUAL_ENTROPY,
    IsingSquare,
    IsingTriangular,
    onsager_free_energy_per_site,
)
from arjax.targets.queens import NQUEENS_SOLUTION_COUNTS, BoardState, NonAttacking, NQueens, exact_count
from arjax.targets.spin_glass import SherringtonKirkpatrick

__all__ = [
    "MAX_ENUMERATION_STATES",
    "BETA_CRITICAL",
    "WANNIER_RESIDUAL_ENTROPY",
    "AbstractTarget",
    "EnergyTarget",
    "FreeScalarField",
    "Phi4",
    "IsingSquare",
    "IsingTriangular",
    "NQueens",
    "NQUEENS_SOLUTION_COUNTS",
    "NonAttacking",
    "BoardState",
    "exact_count",
    "SherringtonKirkpatrick",
    "log_partition_by_enumeration",
    "ground_state_by_enumeration",
    "onsager_free_energy_per_site",
]
