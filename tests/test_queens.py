"""``NQueens``: energies and solution counts against plain-Python brute force."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arjax.targets import NQUEENS_SOLUTION_COUNTS, NonAttacking, NQueens, exact_count
from arjax.testing import all_sequences

OEIS_A000170 = [  # a(1)…a(27), https://oeis.org/A000170
    1, 0, 0, 2, 10, 4, 40, 92, 352, 724, 2680, 14200, 73712, 365596, 2279184, 14772512, 95815104, 666090624,
    4968057848, 39029188884, 314666222712, 2691008701644, 24233937684440, 227514171973736, 2207893435808352,
    22317699616364044, 234907967154122528,
]  # fmt: skip


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
    assert [NQueens(n).known_solution_count for n in range(1, 28)] == OEIS_A000170
    assert [exact_count(n) for n in range(1, 28)] == OEIS_A000170
    assert NQUEENS_SOLUTION_COUNTS == dict(enumerate(OEIS_A000170, start=1))
    assert NQueens(28).known_solution_count is None


@pytest.mark.parametrize("n, match", [(28, "no exact n-queens count is known"), (0, "n must be"), (8.0, "n must be"),
                                      (True, "n must be")])  # fmt: skip
def test_exact_count_rejects_unknown_and_bad_n(n, match):
    with pytest.raises(ValueError, match=match):
        exact_count(n)


def attacked_or_dead(prefix, i, c, n, look_ahead):
    """Brute force: (i, c) is attacked by the prefix, or a queen there empties one of the next rows."""
    board = list(prefix) + [c]
    hits = lambda j, col, queens: any(q == col or abs(q - col) == j - r for r, q in enumerate(queens))  # noqa: E731
    if hits(i, c, prefix):
        return True
    return any(all(hits(j, col, board) for col in range(n)) for j in range(i + 1, min(n, i + look_ahead + 1)))


@pytest.mark.parametrize("look_ahead", [0, 1, 4])
def test_non_attacking_rule_and_its_bitmasks_match_brute_force(look_ahead):
    n = 5
    rule = NonAttacking(n, look_ahead=look_ahead)
    prefixes = [p for i in range(n) for p in itertools.product(range(n), repeat=i)]
    x = jnp.asarray([list(p) + [0] * (n - len(p)) for p in prefixes], jnp.int32)
    rows = jnp.asarray([len(p) for p in prefixes], jnp.int32)

    def from_bitmasks(x, i):  # place x[0], …, x[i-1] one by one, then read the free columns of row i
        def place(state, r):
            return jax.tree.map(lambda new, old: jnp.where(r < i, new, old), rule.place(state, x[r]), state), None

        return rule.free(jax.lax.scan(place, rule.start(), jnp.arange(n))[0], i)

    got = np.asarray(jax.jit(jax.vmap(rule))(x, rows))
    got_bits = np.asarray(jax.jit(jax.vmap(from_bitmasks))(x, rows))
    for prefix, row, row_bits in zip(prefixes, got, got_bits):
        expected = [not attacked_or_dead(prefix, len(prefix), c, n, look_ahead) for c in range(n)]
        assert row.tolist() == expected, prefix
        if attacking_pairs(list(prefix)) == 0:  # the incremental bitmasks follow non-attacking prefixes
            assert row_bits.tolist() == expected, prefix


def test_symmetries_map_solutions_to_the_eight_distinct_solutions_of_their_orbit():
    board = NQueens(8)
    solution = jnp.array([0, 4, 7, 5, 2, 6, 1, 3])
    images = np.asarray(board.symmetries(solution))
    assert len({tuple(b) for b in images.tolist()}) == 8
    assert all(bool(board.is_valid(b)) for b in images)
    as_matrix = lambda x: np.eye(8, dtype=int)[x]  # noqa: E731  row r has its queen in column x[r]
    m = as_matrix(images[0])
    expected = [m, m[:, ::-1], m[::-1], m[::-1, ::-1], m.T, m.T[:, ::-1], m.T[::-1], m.T[::-1, ::-1]]
    for image, matrix in zip(images, expected):
        np.testing.assert_array_equal(as_matrix(image), matrix)


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
    with pytest.raises(ValueError, match=match):
        NonAttacking(n)


def test_bad_look_ahead_and_board_too_large_for_bitmasks_are_rejected():
    with pytest.raises(ValueError, match=r"look_ahead must be an integer in 0\.\.4"):
        NonAttacking(5, look_ahead=5)
    with pytest.raises(ValueError, match="up to n = 32"):
        NonAttacking(33).start()


def test_wrong_board_shape_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        NQueens(4).energy(jnp.zeros(5, int))
