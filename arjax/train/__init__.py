"""Optax training loops (``fit_free_energy``, ``fit_mle``, ``fit_reward``, ``fit_count``), resumable states, atomic
checkpoints."""

from arjax.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from arjax.train.count import fit_count
from arjax.train.free_energy import annealed_beta, fit_free_energy
from arjax.train.guard import NonFiniteError
from arjax.train.microbatch import value_and_grad_by_microbatch
from arjax.train.mle import evaluate_nll, fit_mle
from arjax.train.reward import fit_reward
from arjax.train.state import TrainState

__all__ = [
    "fit_free_energy",
    "fit_mle",
    "fit_reward",
    "fit_count",
    "evaluate_nll",
    "value_and_grad_by_microbatch",
    "annealed_beta",
    "TrainState",
    "NonFiniteError",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]
