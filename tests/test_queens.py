"""``NQueens``: energies and solution counts against plain-Python brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax.targets import NQUEENS_SOLUTION_COUNTS, NQueens
from arjax.testing import all_sequences

OEIS_A000170 = [1, 0, 0, 2, 10, 4, 40, 92, 352, 724, 2680, 14200, 73712, 365596]


def attacking_pairs(x) -> int:
    return sum(
        1
        for i, j in itertools.combinations(range(len(x)), 2)
        if x[i] == x[j] or abs(x[i] - x[j]) == j - i
    )


def count_solutions(n: int) -> int:
    """Backtracking over rows, checking columns and both diagonals."""

    def place(row, cols, diag, anti):
        if row == n:
            return 1
        return sum(
            place(row + 1, cols | {c}, diag | {row - c}, anti | {row + c})
            for c in range(n)
            if c not in cols and row - c not in diag and row + c not in anti
        )

    return place(0, set(), set(), set())


def test_known_solution_counts_are_oeis_a000170():
    assert [NQueens(n).known_solution_count for n in range(1, 15)] == OEIS_A000170
    assert NQUEENS_SOLUTION_COUNTS == dict(enumerate(OEIS_A000170, start=1))
    assert NQueens(15).known_solution_count is None


@pytest.mark.parametrize("n", range(1, 9))
def test_known_solution_counts_equal_brute_force(n):
    assert count_solutions(n) == NQueens(n).known_solution_count


@pytest.mark.parametrize("n", range(1, 7))
def test_number_of_zero_energy_placements_over_all_n_to_the_n(n):
    target = NQueens(n)
    energies = np.asarray(target.energies(all_sequences(n, n)))
    assert int(np.sum(energies == 0)) == target.known_solution_count
    valid = jax.vmap(target.is_valid)(all_sequences(n, n))
    np.testing.assert_array_equal(np.asarray(valid), energies == 0)


@pytest.mark.parametrize("n", [7, 8])
def test_valid_permutations_count_the_solutions(n):
    target = NQueens(n)
    perms = jnp.asarray(list(itertools.permutations(range(n))), jnp.int32)
    assert int(jnp.sum(jax.vmap(target.reward)(perms))) == target.known_solution_count


def test_energy_equals_attacking_pairs_on_random_boards():
    rng = np.random.default_rng(0)
    for n in (5, 11):
        target = NQueens(n)
        boards = rng.integers(0, n, (200, n))
        expected = [attacking_pairs(b.tolist()) for b in boards]
        np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(target.energy))(boards)), expected)


def test_hand_written_boards():
    target = NQueens(8)
    solution = jnp.array([0, 4, 7, 5, 2, 6, 1, 3])
    assert float(target.energy(solution)) == 0.0 and bool(target.is_valid(solution))
    assert float(target.reward(solution)) == 1.0
    assert float(target.energy(jnp.zeros(8, int))) == 28.0  # all in one column
    assert float(target.energy(jnp.arange(8))) == 28.0  # all on one diagonal
    assert float(target.reward(jnp.arange(8))) == 0.0
    assert target.num_positions == target.num_categories == 8


def test_boltzmann_log_partition_at_large_beta_counts_solutions():
    target = NQueens(6)
    assert target.exact_log_partition(40.0) == pytest.approx(np.log(4), abs=1e-6)
    assert target.ground_state_energy() == 0.0


@pytest.mark.parametrize("n, match", [(0, "n must be"), (2.5, "n must be")])
def test_bad_n_is_rejected(n, match):
    with pytest.raises(ValueError, match=match):
        NQueens(n)


def test_wrong_board_shape_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        NQueens(4).energy(jnp.zeros(5, int))
