"""Counting n-queens solutions by importance sampling: exactness by enumeration, calibration, bad input."""

import itertools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from conftest import chi_square_pvalue, sequence_index

from arjax import Autoregressive
from arjax.allowed import masked_log_softmax
from arjax.counting import D4Symmetrized, QueensProposal, count_completions
from arjax.estimators import CountEstimate, count, pool_counts
from arjax.nn import MADE
from arjax.objectives import count_loss
from arjax.targets import NonAttacking, NQueens, exact_count
from arjax.train import fit_count


def all_boards(n: int) -> np.ndarray:
    """Every placement of one queen per row, n**n of them, in lexicographic order."""
    return np.array(list(itertools.product(range(n), repeat=n)), np.int32).reshape(-1, n)


def brute_force_solutions(n: int) -> set[tuple[int, ...]]:
    return {p for p in itertools.permutations(range(n)) if all(abs(p[i] - p[j]) != j - i
                                                               for i in range(n) for j in range(i + 1, n))}  # fmt: skip


def dead_end_mass(conditionals: np.ndarray, n: int) -> float:
    """Σ q(prefix) over the prefixes whose next row allows no column, walking the tree of allowed prefixes.

    ``conditionals[b, i]`` are the normalised ``q(x_i = · | x_{<i})`` of board ``b`` of ``all_boards(n)``;
    the prefix ``p`` of length ``i`` reads them from the board ``p`` padded with zeros.
    """
    mass, frontier = 0.0, [((), 1.0)]
    for row in range(n):
        children = []
        for prefix, q in frontier:
            p = conditionals[sequence_index(np.array(prefix + (0,) * (n - row)), n), row]
            if not (p > 0).any():
                mass += q
            children += [(prefix + (c,), q * p[c]) for c in np.flatnonzero(p > 0)]
        frontier = children
    return mass


def perturbed(q: QueensProposal, key) -> QueensProposal:
    """The proposal with random logits, so that no exactness check passes by symmetry alone."""
    k1, k2 = jax.random.split(key)
    noise = (0.5 * jax.random.normal(k1, q.table.shape), 0.5 * jax.random.normal(k2, q.bias.shape))
    return eqx.tree_at(lambda m: (m.table, m.bias), q, (q.table + noise[0], q.bias + noise[1]))


@pytest.mark.parametrize("n", [5])
def test_masked_made_is_normalised_with_its_dead_ends_and_zero_on_attacking_boards(n):
    net = MADE(num_positions=n, num_categories=n, width=16, depth=1, key=jax.random.key(n))
    dist = Autoregressive(net, allowed=NQueens(n).allowed)
    boards = all_boards(n)
    tables = eqx.filter_jit(lambda d, x: (d.log_prob(x), d.conditional_log_probs(x)))
    log_q, conditionals = tables(dist, jnp.asarray(boards))
    log_q, conditionals = np.asarray(log_q, np.float64), np.exp(np.asarray(conditionals, np.float64))
    solutions = brute_force_solutions(n)
    is_solution = np.array([tuple(b) in solutions for b in boards.tolist()])
    assert np.all(np.isneginf(log_q[~is_solution]))  # every attacking board has q = 0
    assert np.all(np.isfinite(log_q[is_solution]))  # every solution has q > 0: the estimate is unbiased
    q = np.exp(log_q[is_solution])
    assert q.sum() + dead_end_mass(conditionals, n) == pytest.approx(1.0, abs=1e-5)
    # E_q[w] over everything q can produce (completions and dead ends, w = 0 there) is Q exactly
    assert np.sum(q * (1 / q)) == pytest.approx(exact_count(n), rel=1e-6) and len(q) == exact_count(n)


@pytest.mark.slow
@pytest.mark.parametrize("n", [6, 7, 8])
def test_masked_made_exactness_on_all_n_to_the_n_boards_of_six_to_eight_queens(n):
    test_masked_made_is_normalised_with_its_dead_ends_and_zero_on_attacking_boards(n)


def exact_tables(q, n: int):
    """``ln q`` of every board by the fast path and by ``Autoregressive(q, allowed=q.allowed)``, and 20000 samples."""
    boards = jnp.asarray(all_boards(n))
    fast = np.asarray(eqx.filter_jit(lambda q, x: q.log_prob(x))(q, boards), np.float64)
    generic = np.asarray(eqx.filter_jit(lambda q, x: Autoregressive(q, allowed=q.allowed).log_prob(x))(q, boards))
    x, log_q = sample_20000(q, jax.random.key(1))
    return fast, generic, np.asarray(x), np.asarray(log_q)


sample_20000 = eqx.filter_jit(lambda q, k: q.sample_and_log_prob(k, (20_000,)))


@pytest.fixture(scope="module")
def five_queens():
    q = perturbed(QueensProposal(5, horizon=2, exact_rows=2), jax.random.key(5))
    return q, *exact_tables(q, 5)


def check_same_distribution(n, fast, generic, x, log_q):
    solutions = np.isfinite(fast)
    assert solutions.sum() == exact_count(n)
    np.testing.assert_array_equal(solutions, np.isfinite(generic))
    np.testing.assert_allclose(fast[solutions], generic[solutions], atol=2e-5)
    # the fast sampler draws from that q: solutions with frequencies q(x), the rest are dead ends
    solved = np.isfinite(log_q)
    np.testing.assert_allclose(log_q[solved], fast[sequence_index(x[solved], n)], atol=2e-5)
    probs = np.where(solutions, np.exp(fast), 0.0)
    probs[0] = 1.0 - probs.sum()  # the dead ends, pooled in board 0 (not a solution)
    samples = np.concatenate([x[solved], np.zeros(((~solved).sum(), n), np.int32)])
    assert chi_square_pvalue(samples, probs) > 1e-3


def test_fast_proposal_is_the_same_distribution_as_autoregressive_with_its_rule(five_queens):
    check_same_distribution(5, *five_queens[1:])
    q, x = five_queens[0], five_queens[3]
    np.testing.assert_array_equal(np.asarray(sample_20000(q, jax.random.key(1))[0]), x)  # same key, same samples
    assert not np.array_equal(np.asarray(sample_20000(q, jax.random.key(2))[0]), x)


@pytest.mark.slow
@pytest.mark.parametrize("n, horizon, exact_rows", [(5, 4, 0), (6, 1, 3), (6, 2, 6), (7, 6, 4)])
def test_fast_proposal_equals_autoregressive_for_more_shapes(n, horizon, exact_rows):
    q = perturbed(QueensProposal(n, horizon=horizon, exact_rows=exact_rows), jax.random.key(n + horizon))
    check_same_distribution(n, *exact_tables(q, n))


def completion_draws(lanes: int):
    """Counts and draws of ``count_completions`` for 60 copies of each 2-queen prefix of n = 7, and the brute force."""
    n, k, copies = 7, 2, 60
    rule = NonAttacking(n)
    prefixes = [p for p in itertools.permutations(range(n), k) if abs(p[0] - p[1]) != 1]
    states = jax.tree.map(lambda *leaves: jnp.repeat(jnp.stack(leaves), copies),
                          *[rule.place(rule.place(rule.start(), a), b) for a, b in prefixes])  # fmt: skip
    solutions = sorted(brute_force_solutions(n))
    completions = [[s[k:] for s in solutions if s[:k] == p] for p in prefixes]
    search = jax.jit(lambda s: count_completions(s, n, n - k, lanes=lanes, key=jax.random.key(3)))
    counts, drawn = map(np.asarray, search(states))
    return counts, drawn, completions, copies


def test_count_completions_counts_and_draws_completions_uniformly():
    counts, drawn, completions, copies = completion_draws(lanes=5)  # lanes take several boards each
    assert max(map(len, completions)) > 1 and min(map(len, completions)) == 0
    np.testing.assert_array_equal(counts, np.repeat([len(c) for c in completions], copies))
    observed, expected = [], []
    for i, c in enumerate(completions):
        draws = [tuple(row) for row in drawn[i * copies:(i + 1) * copies].tolist()]
        assert set(draws) <= set(c) or (not c and set(draws) == {(0,) * 5})
        observed += [draws.count(t) for t in c]
        expected += [copies / max(len(c), 1)] * len(c)
    chi2 = np.sum((np.array(observed) - expected) ** 2 / expected)
    assert scipy.stats.chi2.sf(chi2, len(observed) - sum(map(bool, completions))) > 1e-3, chi2  # uniform per board


@pytest.mark.slow
def test_count_completions_does_not_depend_on_the_lanes():
    (counts, drawn, *_), (counts_64, drawn_64, *_) = completion_draws(lanes=1), completion_draws(lanes=64)
    np.testing.assert_array_equal(counts_64, counts)
    np.testing.assert_array_equal(drawn_64, drawn)  # lanes set the speed, not the draw


@pytest.mark.slow
def test_exact_rows_over_the_whole_board_draw_solutions_uniformly_with_the_same_samples_for_the_same_key():
    n = 7
    q = QueensProposal(n, horizon=0, exact_rows=n)
    sample = eqx.filter_jit(lambda q, k: q.sample_and_log_prob(k, (300,)))
    x, log_q = map(np.asarray, sample(q, jax.random.key(0)))
    assert np.asarray(jax.vmap(NQueens(n).is_valid)(jnp.asarray(x))).all()
    np.testing.assert_allclose(log_q, -np.log(exact_count(n)), rtol=1e-6)  # zero variance: every weight is Q
    assert len({tuple(b) for b in x.tolist()}) > 35  # 300 uniform draws from 40 miss none, nearly always
    np.testing.assert_array_equal(np.asarray(sample(q, jax.random.key(0))[0]), x)
    assert not np.array_equal(np.asarray(sample(q, jax.random.key(1))[0]), x)


def board_images(x: np.ndarray) -> list[np.ndarray]:
    """The 8 images of a permutation under rotations and reflections, via its permutation matrix."""
    m = np.eye(len(x), dtype=int)[x]
    images = [np.rot90(m, k) for k in range(4)] + [np.rot90(m.T, k) for k in range(4)]
    return [image.argmax(axis=1) for image in images]


def test_d4_symmetrised_proposal_averages_the_eight_images_and_keeps_the_solution_mass(five_queens):
    n, (q, log_q) = 5, five_queens[:2]
    sym = D4Symmetrized(q)
    boards = all_boards(n)
    solutions = boards[np.isfinite(log_q)]
    expected = [np.log(np.mean([np.exp(log_q[sequence_index(g, n)]) for g in board_images(b)])) for b in solutions]
    assert np.exp(expected).sum() == pytest.approx(np.exp(log_q[np.isfinite(log_q)]).sum(), rel=1e-5)
    x, log_s = eqx.filter_jit(lambda q, k: q.sample_and_log_prob(k, (500,)))(sym, jax.random.key(0))
    x, log_s = np.asarray(x), np.asarray(log_s)
    solved = np.isfinite(log_s)
    assert solved.mean() == pytest.approx(np.exp(log_q[np.isfinite(log_q)]).sum(), abs=0.1)  # dead ends stay dead
    by_board = dict(zip(map(tuple, solutions.tolist()), expected))
    np.testing.assert_allclose([by_board[tuple(b)] for b in x[solved].tolist()], log_s[solved], atol=1e-5)
    assert len({tuple(b) for b in x[solved].tolist()}) == exact_count(n)  # images of the samples cover the orbits


@pytest.mark.slow
def test_d4_symmetrised_log_prob_matches_its_samples_and_is_minus_infinity_off_the_solutions(five_queens):
    q, log_q = five_queens[:2]
    sym = D4Symmetrized(q)
    x, log_s = eqx.filter_jit(lambda q, k: q.sample_and_log_prob(k, (500,)))(sym, jax.random.key(0))
    log_prob = eqx.filter_jit(lambda q, x: q.log_prob(x))
    solved = np.isfinite(np.asarray(log_s))
    np.testing.assert_allclose(np.asarray(log_prob(sym, x))[solved], np.asarray(log_s)[solved], atol=1e-5)
    boards = all_boards(5)
    np.testing.assert_array_equal(np.isfinite(np.asarray(log_prob(sym, jnp.asarray(boards)))), np.isfinite(log_q))


def test_count_streams_batches_into_the_statistics_of_all_samples(five_queens):
    n, batch, num = 5, 1000, 3500  # four batches, the last one cut to 500
    q = five_queens[0]
    est = count(q, NQueens(n).is_valid, jax.random.key(4), num, batch_size=batch)
    w = []
    sample = eqx.filter_jit(lambda q, k: q.sample_and_log_prob(k, (batch,)))
    for b in range(4):
        x, log_q = sample(q, jax.random.fold_in(jax.random.key(4), b))
        w.append(np.where(np.isfinite(np.asarray(log_q)), np.exp(-np.asarray(log_q, np.float64)), 0.0))
    w = np.concatenate(w)[:num]
    assert est.num_samples == num
    assert est.count == pytest.approx(w.mean(), rel=1e-5)
    assert est.log_count_stderr == pytest.approx(w.std(ddof=1) / np.sqrt(num) / w.mean(), rel=1e-4)
    assert est.ess == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-4)
    assert est.completed == pytest.approx(np.mean(w > 0))
    assert est.lower_bound == pytest.approx(np.log(np.mean(w > 0)) + np.log(w[w > 0]).mean(), rel=1e-5)
    assert est.lower_bound <= np.log(exact_count(n)) + 1e-9  # a variational lower bound
    halves = [count(q, NQueens(n).is_valid, jax.random.key(k), 1000, batch_size=batch) for k in (5, 6)]
    pooled = pool_counts(json.loads(json.dumps(h._asdict()), object_hook=lambda d: CountEstimate(**d)) for h in halves)
    s1 = np.array([1000 * h.count for h in halves])  # Σw of each half; Σw² = (Σw)²/ESS
    assert pooled.count == pytest.approx(s1.sum() / 2000, rel=1e-9)
    assert pooled.ess == pytest.approx(s1.sum() ** 2 / np.sum(s1**2 / [h.ess for h in halves]), rel=1e-9)
    assert pooled.completed == pytest.approx(np.mean([h.completed for h in halves]))


@pytest.mark.slow
@pytest.mark.parametrize("make", [QueensProposal.knuth, lambda n: QueensProposal(n, horizon=3, exact_rows=2)],
                         ids=["knuth", "learnable"])  # fmt: skip
def test_count_is_calibrated_on_nine_queens(make):
    n = 9
    estimate = count(make(n), NQueens(n).is_valid, jax.random.key(0), 2**16, batch_size=2**14)
    z = (estimate.count - exact_count(n)) / estimate.count_stderr
    assert abs(z) < 4 and estimate.log_count_stderr < 0.03, (z, estimate)


def test_fit_count_raises_the_exact_effective_sample_size():
    n = 6
    q0 = QueensProposal(n, horizon=1, exact_rows=0)
    q, history = fit_count(q0, NQueens(n).is_valid, optimizer=optax.adam(0.05), num_steps=30, batch_size=256,
                           key=jax.random.key(0), log_every=30, progress=False)  # fmt: skip

    def exact_ess_fraction(q):  # Q² / Σ_x q(x) w(x)² over the solutions, by enumeration
        log_q = np.asarray(eqx.filter_jit(lambda q, x: q.log_prob(x))(q, jnp.asarray(all_boards(n))), np.float64)
        return exact_count(n) ** 2 / np.sum(np.exp(-log_q[np.isfinite(log_q)]))

    assert bool(history["finite"].all())
    assert exact_ess_fraction(q) > 1.5 * exact_ess_fraction(q0), (exact_ess_fraction(q0), exact_ess_fraction(q))


def test_dead_end_rows_give_minus_infinity_and_zero_not_nan_gradients():
    row = jnp.array([False, False, False])
    assert np.all(np.isneginf(masked_log_softmax(jnp.zeros(3), row, dead_ends=True)))
    grad = jax.grad(lambda z: jnp.sum(jnp.where(row, masked_log_softmax(z, row, dead_ends=True), 0.0)))(jnp.ones(3))
    assert np.all(np.asarray(grad) == 0)  # not NaN: training steps through dead ends stay finite (see fit_count)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: NQueens(0), ValueError, "n must be an integer ≥ 1"),
        (lambda: QueensProposal(2.5), ValueError, "n must be an integer ≥ 1"),
        (lambda: QueensProposal(33), ValueError, r"n must be an integer in 1\.\.32"),
        (lambda: QueensProposal(8, exact_rows=9), ValueError, r"exact_rows must be an integer in 0\.\.8"),
        (lambda: QueensProposal(13, exact_rows=13), ValueError, r"exact_rows must be an integer in 0\.\.12"),
        (lambda: QueensProposal(8, lanes=0), ValueError, "lanes must be an integer ≥ 1, got 0"),
        (lambda: count_completions(jax.tree.map(lambda a: a[None], NonAttacking(6).start()), 6, 7), ValueError,
         r"rows must be an integer in 0\.\.6, got 7"),
        (lambda: QueensProposal(8, horizon=8), ValueError, r"horizon must be an integer in 0\.\.7"),
        (lambda: count(QueensProposal(6), NQueens(7).is_valid, jax.random.key(0), 100), ValueError,
         "proposal samples sequences of 6 tokens, which is_solution does not accept"),
        (lambda: count(QueensProposal(6), NQueens(6).is_valid, jax.random.key(0), 0), ValueError,
         "num_samples must be an integer ≥ 1, got 0"),
        (lambda: count(MADE(6, 6, key=jax.random.key(0)), NQueens(6).is_valid, jax.random.key(0), 10), TypeError,
         "proposal must have sample_and_log_prob"),
        (lambda: fit_count(QueensProposal(6), NQueens(5).is_valid, optimizer=optax.adam(0.1), num_steps=1,
                           batch_size=8, key=jax.random.key(0)), ValueError, "net samples sequences of 6 tokens"),
        (lambda: fit_count(QueensProposal(6), NQueens(6).is_valid, optimizer=optax.adam(0.1), num_steps=0,
                           batch_size=8, key=jax.random.key(0)), ValueError, "num_steps must be an integer ≥ 1"),
        (lambda: count_loss(QueensProposal(6), jax.random.key(0), is_solution=NQueens(6).is_valid, num_samples=8,
                            divergence="reverse_kl"), ValueError, 'divergence must be "forward_kl" or "chi2"'),
        (lambda: D4Symmetrized(MADE(6, 6, key=jax.random.key(0))), TypeError, "proposal must have sample_and_log_prob"),
    ],
    ids=["nqueens-n0", "proposal-float-n", "proposal-n33", "exact-rows", "exact-rows-13", "lanes", "completion-rows",
         "horizon", "wrong-size", "zero-budget",
         "not-a-proposal", "fit-wrong-size", "fit-zero-steps", "divergence", "d4-not-a-proposal"],
)  # fmt: skip
def test_bad_input_is_rejected_with_a_message_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_pool_counts_needs_count_estimates():
    with pytest.raises(TypeError, match="estimates must be a non-empty sequence of CountEstimate"):
        pool_counts([])
