"""PixelCNN: raster-order causality, exact normalisation, cached decoding, errors."""

import functools
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import chi_square_pvalue, sequence_index
from jax import lax

import arjax
from arjax.nn.pixelcnn import PixelCNN
from arjax.sampling import sample_and_log_prob
from arjax.testing import all_sequences, check_autoregressive

CONFIGS = [
    # L, depth, half_kernel, residual, padding, final_conv
    (3, 1, 1, False, "zero", False),
    (3, 2, 2, False, "periodic", True),
    (4, 3, 1, True, "zero", True),
    (4, 4, 2, True, "periodic", False),
    (8, 3, 1, True, "periodic", True),  # L > 2(2h+1): column-tiled evaluation
]


@functools.lru_cache(maxsize=None)
def make(L, depth=2, half_kernel=1, residual=False, padding="zero", final_conv=True, K=2, seed=0):
    return PixelCNN(
        L, K, depth=depth, width=6, half_kernel=half_kernel, residual=residual,
        padding=padding, final_conv=final_conv, key=jax.random.key(seed),
    )  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
def test_rows_depend_exactly_on_the_receptive_field_of_earlier_sites(config):
    L, depth, h, residual, padding, final_conv = config
    net = make(L, depth, h, residual, padding, final_conv, K=3)
    seen = np.asarray(check_autoregressive(net, jax.random.key(1), num_inputs=1))
    np.testing.assert_array_equal(seen, _receptive_field(L, depth, h, padding == "periodic"))


def test_changing_a_site_never_changes_earlier_or_equal_rows():
    L = CONFIGS[4][0]
    net = make(*CONFIGS[4], K=3)
    x = jax.random.randint(jax.random.key(2), (L * L,), 0, 3)
    sites = jnp.arange(L * L)
    perturbed = x[None].repeat(L * L, 0).at[sites, sites].add(1) % 3
    logits = np.asarray(_logits(net, jnp.concatenate([x[None], perturbed])))
    base, changed = logits[0], logits[1:]
    rows = np.arange(L * L)
    for j in range(L * L):
        np.testing.assert_allclose(changed[j][rows <= j], base[rows <= j], atol=1e-6)


@pytest.mark.parametrize("L, h, padding", [(5, 2, "zero"), (5, 2, "periodic"), (7, 1, "zero"), (7, 1, "periodic")])
def test_single_layer_is_a_type_A_masked_convolution(L, h, padding):
    net = PixelCNN(L, 3, depth=1, half_kernel=h, padding=padding, final_conv=False, key=jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (L * L,), 0, 3)
    w, b = np.asarray(net.first.weight, np.float64), np.asarray(net.first.bias, np.float64)
    expected = _masked_conv_reference(np.eye(3)[np.asarray(x)].reshape(L, L, 3), w, b, padding == "periodic")
    logits = _logits(net, x[None])[0]
    np.testing.assert_allclose(logits, expected.reshape(L * L, 3), atol=1e-5)
    if padding == "zero":
        k = 2 * h + 1
        mask = np.zeros((k, k))
        mask[:h], mask[h, :h] = 1, 1
        kernel = jnp.transpose(net.first.weight * mask, (2, 3, 1, 0))
        conv = lax.conv_general_dilated(
            jax.nn.one_hot(x, 3).reshape(1, L, L, 3), kernel, (1, 1), [(h, h), (h, h)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip
        np.testing.assert_allclose(logits, conv.reshape(L * L, 3) + net.first.bias, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS)
def test_logits_equal_a_plain_loop_over_masked_convolutions(config):
    """Every layer, the pulled (wide output) and pushed (narrow output) Toeplitz products alike."""
    L, depth, h, residual, padding, final_conv = config
    net = make(L, depth, h, residual, padding, final_conv, K=3)
    x = jax.random.randint(jax.random.key(4), (L * L,), 0, 3)
    expected = _net_reference(net, np.asarray(x))
    np.testing.assert_allclose(_logits(net, x[None])[0], expected, rtol=1e-5, atol=1e-5)


def test_int_and_one_hot_inputs_agree():
    net = make(*CONFIGS[2], K=3)
    x = jax.random.randint(jax.random.key(1), (16,), 0, 3)
    np.testing.assert_allclose(_logits(net, x[None]), _logits(net, jax.nn.one_hot(x, 3)[None]), atol=1e-6)


@pytest.mark.parametrize("config", CONFIGS[2:])
def test_decode_step_in_scan_reproduces_every_row(config):
    L, depth, h, residual, padding, final_conv = config
    net = make(L, depth, h, residual, padding, final_conv, K=3)
    xs = jax.random.randint(jax.random.key(3), (2, L * L), 0, 3)
    np.testing.assert_allclose(_teacher_forced(net, xs), _logits(net, xs), atol=1e-5)


@pytest.mark.parametrize(
    "L, K, config",
    [
        (3, 2, dict(depth=2, padding="periodic", final_conv=False)),
        (4, 2, dict(depth=2, half_kernel=1)),
        (2, 3, dict(depth=3, final_conv=False)),
    ],
)
def test_probabilities_sum_to_one_over_all_configurations(L, K, config):
    net = make(L, K=K, **config)
    x = jnp.asarray(list(itertools.product(range(K), repeat=L * L)), jnp.int32)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(_logits(net, x)), x[..., None], -1).sum((1, 2))
    assert abs(np.exp(np.asarray(log_p, np.float64)).sum() - 1) < 1e-5


ENUMERATED = {
    # L, K, constructor options: 3×3 with K=2 (2^9 sequences) and 2×2 with K=3 (3^4)
    "3x3_K2_residual": (3, 2, dict(depth=3, residual=True)),
    "2x2_K3_periodic": (2, 3, dict(depth=2, padding="periodic", final_conv=False)),
}


@pytest.fixture(scope="module", params=list(ENUMERATED), ids=list(ENUMERATED))
def enumerated(request):
    """A PixelCNN pushed away from its near-uniform start, with ``ln p`` of every sequence."""
    L, K, config = ENUMERATED[request.param]
    net = jax.tree.map(lambda a: 4 * a if eqx.is_inexact_array(a) else a, make(L, K=K, **config))
    xs = all_sequences(L * L, K)
    log_p = np.asarray(_log_prob(net, xs), np.float64)
    return net, np.asarray(xs), log_p


def test_enumerated_log_probs_are_normalised_and_far_from_uniform(enumerated):
    _, _, log_p = enumerated
    probs = np.exp(log_p)
    assert abs(probs.sum() - 1) < 1e-5
    assert probs.max() > 10 * probs.min()


def test_cached_samples_follow_the_enumerated_distribution(enumerated):
    net, xs, log_p = enumerated
    samples, sample_log_p = _sample_cached(net, jax.random.key(11))
    samples, sample_log_p = np.asarray(samples), np.asarray(sample_log_p)
    assert samples.shape == (NUM_SAMPLES, xs.shape[1])
    np.testing.assert_allclose(sample_log_p, log_p[sequence_index(samples, net.num_categories)], atol=1e-4)
    assert chi_square_pvalue(samples, np.exp(log_p)) > 1e-3


def test_chi_square_rejects_samples_of_a_different_pixelcnn(enumerated):
    net, _, log_p = enumerated
    other = jax.tree.map(lambda a: -a if eqx.is_inexact_array(a) else a, net)
    samples, _ = _sample_cached(other, jax.random.key(11))
    assert chi_square_pvalue(samples, np.exp(log_p)) < 1e-6


def test_cached_and_generic_samplers_draw_identical_samples():
    net = make(*CONFIGS[1], K=3)
    x_cached, lp_cached = sample_and_log_prob(net, jax.random.key(5), (6,), cached=True)
    x_generic, lp_generic = sample_and_log_prob(net, jax.random.key(5), (6,), cached=False)
    np.testing.assert_array_equal(x_cached, x_generic)
    np.testing.assert_allclose(lp_cached, lp_generic, atol=1e-5)


def test_masked_kernel_entries_get_zero_gradient():
    net = make(*CONFIGS[2], K=3)
    grads = eqx.filter_jit(eqx.filter_grad(lambda n: jnp.sum(n(jnp.array([1, 0] * 8)) ** 2)))(net)
    for grad, exclusive in ((grads.first.weight, True), (grads.blocks[0].conv.weight, False)):
        mask = np.zeros((3, 3), bool)
        mask[0], mask[1, 0], mask[1, 1] = True, True, not exclusive
        grad = np.asarray(grad)
        assert np.all(grad[:, :, ~mask] == 0)
        assert np.all(np.abs(grad[:, :, mask]).sum(axis=(0, 1)) > 0)


def test_van_default_matches_the_paper_configuration():
    net = PixelCNN.van_default(16, key=jax.random.key(0))
    assert (net.L, net.num_positions, net.num_categories) == (16, 256, 2)
    assert (net.depth, net.width, net.half_kernel, net.residual, net.final_conv) == (3, 64, 6, False, False)
    assert net.first.weight.shape == (64, 2, 13, 13) and net.blocks[-1].conv.weight.shape == (2, 64, 13, 13)
    assert net.context_shape is None


def test_works_in_float64():
    with jax.enable_x64(True):
        net = make(3, depth=3, residual=True)
        x = jnp.array([[1, 0, 1, 1, 0, 0, 1, 0, 1]])
        logits = _logits(net, x)
        assert logits.dtype == jnp.float64
        np.testing.assert_allclose(_teacher_forced(net, x), logits, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(L=1), "L must be"),
        (dict(L=3, num_categories=1), "num_categories"),
        (dict(L=3, depth=0), "depth"),
        (dict(L=3, width=0), "width"),
        (dict(L=3, half_kernel=0), "half_kernel"),
        (dict(L=3, padding="reflect"), "padding"),
    ],
)
def test_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelCNN(**kwargs, key=jax.random.key(0))


def test_rejects_bad_inputs():
    net = make(3)
    with pytest.raises(ValueError, match=r"x must have shape \(9,\)"):
        net(jnp.zeros(8, jnp.int32))
    with pytest.raises(ValueError, match=r"4×4 lattice, but this PixelCNN was built for L=3"):
        net(jnp.zeros(16, jnp.int32))
    with pytest.raises(ValueError, match=r"reshape\(-1\)"):
        net(jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"\(9, 2\)"):
        net(jnp.zeros((9, 3)))
    with pytest.raises(ValueError, match="takes no context"):
        net(jnp.zeros(9, jnp.int32), jnp.zeros(2))
    with pytest.raises(ValueError, match="takes no context"):
        net.init_cache(jnp.zeros(2))
    with pytest.raises(TypeError, match="token"):
        net.decode_step(net.init_cache(), 0, jnp.zeros(2, jnp.int32))


NUM_SAMPLES = 50_000


@eqx.filter_jit
def _log_prob(net, xs):
    return arjax.Autoregressive(net).log_prob(xs)


@eqx.filter_jit
def _sample_cached(net, key):
    return sample_and_log_prob(net, key, (NUM_SAMPLES,), cached=True)


@eqx.filter_jit
def _logits(net, xs):
    return jax.vmap(net)(xs)


@eqx.filter_jit
def _teacher_forced(net, xs):
    """Rows of ``decode_step`` in a ``lax.scan``, feeding the true previous token at every site."""

    def one(x):
        previous = jnp.concatenate([jnp.zeros(1, x.dtype), x[:-1]])

        def step(cache, inputs):
            logits, cache = net.decode_step(cache, *inputs)
            return cache, logits

        return lax.scan(step, net.init_cache(), (jnp.arange(net.num_positions), previous))[1]

    return jax.vmap(one)(xs)


def _taps(L, h, exclusive, periodic, r, c):
    """Sites read by a masked (2h+1)² kernel at (r, c), by plain enumeration of the documented rule."""
    for dr, dc in itertools.product(range(-h, 1), range(-h, h + 1)):
        if dr == 0 and (dc > 0 or (dc == 0 and exclusive)):
            continue
        col = (c + dc) % L if periodic and dr < 0 else c + dc
        if r + dr >= 0 and 0 <= col < L:
            yield (r + dr) * L + col


def _receptive_field(L, depth, h, periodic):
    N = L * L
    reads = [np.zeros((N, N), bool) for _ in range(2)]
    for exclusive, R in zip((True, False), reads):
        for r, c in itertools.product(range(L), range(L)):
            R[r * L + c, list(_taps(L, h, exclusive, periodic, r, c))] = True
    field = reads[0]
    for _ in range(depth - 1):
        field = (reads[1].astype(int) @ field.astype(int)) > 0
    return field


def _net_reference(net, x):
    """``net(x)`` in float64 NumPy, one masked convolution at a time (``_masked_conv_reference``)."""
    L, periodic = net.L, net.padding == "periodic"
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    prelu = lambda slope, a: np.where(a >= 0, a, f64(slope) * a)  # noqa: E731

    def conv(layer, u, exclusive):
        return _masked_conv_reference(u, f64(layer.weight), f64(layer.bias), periodic, exclusive)

    a = conv(net.first, np.eye(net.num_categories)[x].reshape(L, L, -1), True)
    for block in net.blocks:
        u = a if block.mix is None else a @ f64(block.mix.weight).T + f64(block.mix.bias)
        y = conv(block.conv, prelu(block.slope, u), False)
        a = a + y if block.residual else y
    if net.head is not None:
        a = prelu(net.head.slope, a) @ f64(net.head.out.weight).T + f64(net.head.out.bias)
    return a.reshape(L * L, -1)


def _masked_conv_reference(u, w, b, periodic, exclusive=True):
    L, _, _ = u.shape
    h = w.shape[-1] // 2
    out = np.tile(b, (L, L, 1))
    for r, c in itertools.product(range(L), range(L)):
        for dr, dc in itertools.product(range(-h, 1), range(-h, h + 1)):
            if dr == 0 and (dc > 0 or (dc == 0 and exclusive)):
                continue
            col = (c + dc) % L if periodic and dr < 0 else c + dc
            if r + dr >= 0 and 0 <= col < L:
                out[r, c] += w[:, :, dr + h, dc + h] @ u[r + dr, col]
    return out
