"""Skeleton log-likelihoods: exact for the mixed model (sums to one over enumerated skeletons), and the binned
model's importance-sampling estimate against the exact sum over its coordinate bins."""

import itertools

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from arjax.crystal import CrystalEncoder, CrystalTokenizer, CrystalTransformer
from arjax.crystal.skeleton import encoder_skeleton_log_prob, position_log_probs, tokenizer_skeleton_log_prob
from arjax.nn import Transformer


def _scaled(net, scale):
    return jax.tree.map(lambda w: scale * w if isinstance(w, jax.Array) and w.ndim >= 2 else w, net)


def test_mixed_model_skeleton_probabilities_sum_to_one_over_all_skeletons():
    enc = CrystalEncoder(space_groups=[195, 221], elements=["Na", "Cl"], max_sites=2, max_atoms=4)
    net = _scaled(CrystalTransformer(enc, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(3)), 2.0)
    rule = jax.jit(enc.allowed)
    prefixes = [[]]
    for i in range(enc.coordinate_start):  # breadth-first enumeration of every allowed token prefix
        grown = []
        for prefix in prefixes:
            x = np.zeros(enc.num_positions, np.float32)
            x[:i] = prefix
            grown += [prefix + [float(k)] for k in np.flatnonzero(np.asarray(rule(x, i)))]
        prefixes = grown
    x = np.zeros((len(prefixes), enc.num_positions))
    x[:, : enc.coordinate_start] = prefixes
    x[:, enc.lattice_start :] = [1.0, 1.0, 90.0, 90.0, 90.0, 1.0]
    assert np.exp(logsumexp(encoder_skeleton_log_prob(net, x))) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow  # sequential importance sampling over all bins; the mixed model is exact and checked
def test_binned_skeleton_estimate_matches_the_exact_sum_over_coordinate_bins():
    tok = CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2, coordinate_bins=4,
                           length_range=(5.0, 6.0), length_bins=3, angle_bins=1)  # fmt: skip
    net = _scaled(Transformer(tok.num_positions, tok.num_categories, d_model=16, num_heads=2, num_layers=1,
                              key=jax.random.key(0)), 3.0)  # fmt: skip
    x = tok.encode("225-a-Na-k-Cl-0.25-0.5-X-5.5")  # 96k x,x,z: two coordinate bins between the tokens
    coordinates = [5, 6]
    assert [tok.vocabulary[t].startswith("xyz:") for t in x[coordinates]] == [True, True]
    end = int(np.flatnonzero(x == 1)[0])
    combos = np.array(list(itertools.product(range(4), repeat=2))) + tok.coordinate_start
    xs = np.repeat(x[None], len(combos), axis=0)
    xs[:, coordinates] = combos
    exact = logsumexp(position_log_probs(net, xs, tok.allowed)[:, : end + 1].sum(axis=1))
    estimate = tokenizer_skeleton_log_prob(net, tok, x[None], key=jax.random.key(1), num_samples=4096)[0]
    assert estimate == pytest.approx(exact, abs=0.02)
    few = tokenizer_skeleton_log_prob(net, tok, np.repeat(x[None], 64, 0), key=jax.random.key(2), num_samples=2)
    assert np.mean(few) < exact + 0.02  # Jensen: the log of a small-sample mean is biased low
