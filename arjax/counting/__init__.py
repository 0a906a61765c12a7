"""Counting solutions by importance sampling: learned proposals for combinatorial problems."""

from arjax.counting.completions import count_completions
from arjax.counting.queens_proposal import MAX_EXACT_ROWS, QueensProposal
from arjax.counting.symmetrized import D4Symmetrized

__all__ = ["QueensProposal", "D4Symmetrized", "MAX_EXACT_ROWS", "count_completions"]
