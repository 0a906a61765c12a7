"""Each family on its own: normalised, its CDF is the integral of its density, samples and log-densities
agree with NumPyro's own distributions, and bad arguments are refused by name."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from arjax.families import Categorical, GaussianMixture, LogNormalMixture, VonMisesMixture
from arjax.families.layout import family_from_config, resolve_families

CONTINUOUS = [GaussianMixture(3), LogNormalMixture(3), VonMisesMixture(3)]


def _params(family, key, scale=1.5):
    return scale * jax.random.normal(key, (family.num_params,))


def _grid(family):
    """Quadrature nodes and weights covering the family's support (log-spaced for positive values)."""
    if isinstance(family, VonMisesMixture):
        x = np.arange(512) / 512
        return x, np.full(512, 1 / 512)  # periodic trapezoid
    u = np.linspace(-14, 14, 4001)
    w = np.full(u.size, u[1] - u[0])
    w[[0, -1]] /= 2
    if isinstance(family, LogNormalMixture):
        return np.exp(u), w * np.exp(u)
    return u, w


@pytest.mark.parametrize("family", CONTINUOUS, ids=lambda f: f.name)
def test_density_integrates_to_one_and_the_cdf_is_its_integral(family):
    x, w = _grid(family)
    for key in jax.random.split(jax.random.key(0), 4):
        params = _params(family, key)
        density = np.exp(np.asarray(jax.vmap(family.log_prob, (None, 0))(params, jnp.asarray(x, jnp.float32)), float))
        assert abs(np.sum(density * w) - 1) < 1e-4
        cdf = np.asarray(jax.vmap(family.cdf, (None, 0))(params, jnp.asarray(x, jnp.float32)), float)
        integral = cdf[0] + integrate.cumulative_trapezoid(density, x, initial=0)
        np.testing.assert_allclose(cdf[::37], integral[::37], atol=2e-3)


@pytest.mark.parametrize("family", [Categorical(4), *CONTINUOUS], ids=lambda f: f.name)
def test_log_prob_agrees_with_numpyros_own_distribution(family):
    keys = jax.random.split(jax.random.key(1), 2)
    params = jax.vmap(lambda k: _params(family, k))(jax.random.split(keys[0], 64))
    reference = family.to_numpyro(params)
    values = reference.sample(keys[1])
    ours = jax.vmap(family.log_prob)(params, values)
    np.testing.assert_allclose(ours, reference.log_prob(values), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", [Categorical(4), *CONTINUOUS], ids=lambda f: f.name)
def test_samples_from_uniforms_match_numpyros_sampler(family):
    params = _params(family, jax.random.key(2))
    u = jax.random.uniform(jax.random.key(3), (20_000, family.num_uniforms))
    ours = np.asarray(jax.vmap(family.sample, (None, 0))(params, u))
    theirs = np.asarray(family.to_numpyro(params).sample(jax.random.key(4), (20_000,)))
    if isinstance(family, Categorical):
        counts = np.stack([np.bincount(s.astype(int), minlength=4) for s in (ours, theirs)])
        assert stats.chi2_contingency(counts).pvalue > 1e-3
    else:
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert np.all(np.asarray(family.support(jnp.asarray(ours))))


@pytest.mark.parametrize("family", CONTINUOUS, ids=lambda f: f.name)
def test_every_finite_parameter_gives_a_finite_density(family):
    params = jnp.stack([jnp.full(family.num_params, 30.0), jnp.full(family.num_params, -30.0),
                        jnp.zeros(family.num_params)])  # fmt: skip
    values = jnp.array([0.999, 0.5, 1e-3])
    log_p = jax.vmap(jax.vmap(family.log_prob, (None, 0)), (0, None))(params, values)
    assert np.all(np.isfinite(log_p))


@pytest.mark.parametrize(
    "family, outside",
    [(GaussianMixture(2), [jnp.nan, jnp.inf]), (LogNormalMixture(2), [-1.0, 0.0, jnp.nan]),
     (VonMisesMixture(2), [-0.25, 1.5, jnp.nan]), (Categorical(3), [1.5, -1.0, 3.0])],
    ids=lambda f: getattr(f, "name", ""),
)  # fmt: skip
def test_values_outside_the_support_have_log_density_minus_infinity(family, outside):
    params = jnp.zeros(family.num_params)
    assert np.all(np.isneginf(jax.vmap(family.log_prob, (None, 0))(params, jnp.asarray(outside))))


def test_circular_density_is_periodic_and_fourier_features_are_too():
    family = VonMisesMixture(2, num_frequencies=2)
    params = _params(family, jax.random.key(5))
    assert np.isclose(family.log_prob(params, 0.0), family.log_prob(params, 1.0), atol=1e-5)
    np.testing.assert_allclose(family.features(jnp.float32(0.0)), family.features(jnp.float32(1.0)), atol=1e-5)
    assert family.features(jnp.float32(0.3)).shape == (4,)


def test_mixture_components_start_apart():
    for family in CONTINUOUS:
        loc = family.unpack(jnp.asarray(family.init_bias(), jnp.float32))[1]
        assert len(np.unique(np.round(np.asarray(loc), 4))) == family.components


@pytest.mark.parametrize("family", [Categorical(5), *CONTINUOUS], ids=lambda f: f.name)
def test_config_round_trips(family):
    assert family_from_config(family.config()) == family


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GaussianMixture(0), "components must be an integer >= 1, got 0"),
        (lambda: VonMisesMixture(2.5), "components must be an integer >= 1"),
        (lambda: LogNormalMixture(2, scale_floor=0.0), "scale_floor must be a finite number > 0"),
        (lambda: VonMisesMixture(2, concentration_floor=-1), "concentration_floor must be a finite number > 0"),
        (lambda: VonMisesMixture(2, num_frequencies=0), "num_frequencies must be an integer >= 1"),
        (lambda: Categorical(0), "num_categories must be an integer >= 1"),
        (lambda: family_from_config({"family": "Gamma"}), "unknown family 'Gamma'"),
        (lambda: resolve_families(3, None, [GaussianMixture(1)] * 2), "one family per position: 3, got 2"),
        (lambda: resolve_families(2, None, [GaussianMixture(1), "normal"]), "unknown at positions 1: 'normal'"),
        (lambda: resolve_families(2, 3, GaussianMixture(1)), "give exactly one of num_categories"),
        (lambda: resolve_families(2, None, None), "give exactly one of num_categories"),
    ],
)
def test_bad_arguments_are_refused_by_name(make, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_von_mises_cdf_agrees_with_quadrature_on_both_sides_of_the_series_cutoff():
    from scipy import special

    from arjax.families import von_mises_cdf

    for kappa in [0.01, 2.0, 30.0, 80.0]:
        def density(t, k=kappa):
            return np.exp(k * (np.cos(t) - 1)) / (2 * math.pi * special.i0e(k))

        angles = np.linspace(-math.pi, math.pi, 9)
        reference = [integrate.quad(density, -math.pi, a, epsabs=1e-10, limit=200)[0] for a in angles]
        ours = von_mises_cdf(jnp.asarray(angles, jnp.float32), jnp.float32(kappa))
        np.testing.assert_allclose(ours, reference, atol=3e-6)
        assert np.isclose(float(von_mises_cdf(jnp.float32(2 * math.pi), jnp.float32(kappa))), 1.5, atol=1e-5)


def test_von_mises_cdf_derivatives_are_the_density_and_the_quadrature_of_its_kappa_derivative():
    from scipy import special

    from arjax.families import von_mises_cdf

    angles = np.linspace(-3.0, 3.0, 7) + 4 * math.pi  # two turns up: the unwrapped CDF's derivatives do not change
    for kappa in [0.01, 2.0, 30.0, 80.0]:
        def density(t, k=kappa):
            return np.exp(k * (np.cos(t) - 1)) / (2 * math.pi * special.i0e(k))

        def kappa_slope(t, k=kappa):  # ∂vM/∂κ = vM (cos t - I₁/I₀)
            return density(t) * (np.cos(t) - special.i1e(k) / special.i0e(k))

        reduced = angles - 4 * math.pi
        d_kappa = [integrate.quad(kappa_slope, -math.pi, a, epsabs=1e-12, limit=200)[0] for a in reduced]
        args = (jnp.asarray(angles, jnp.float32), jnp.full(angles.shape, kappa, jnp.float32))
        reverse = jax.vmap(jax.grad(von_mises_cdf, argnums=(0, 1)))(*args)
        forward = jax.vmap(jax.jacfwd(von_mises_cdf, argnums=(0, 1)))(*args)
        np.testing.assert_allclose(reverse[0], density(reduced), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(reverse[1], d_kappa, rtol=1e-4, atol=2e-6)
        for a, b in zip(forward, reverse):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


_SMOOTH = {
    "GaussianMixture": lambda x: x**2 + jnp.sin(x),
    "LogNormalMixture": lambda x: jnp.log(x) ** 2 + jnp.sqrt(x),
    "VonMisesMixture": lambda x: jnp.cos(2 * jnp.pi * x) + 0.5 * jnp.sin(4 * jnp.pi * x),  # periodic on the circle
}


@pytest.mark.parametrize("family", CONTINUOUS, ids=lambda f: f.name)
def test_reparameterised_samples_give_the_gradient_of_expectations(family):
    f = _SMOOTH[family.name]
    params = _params(family, jax.random.key(6), scale=1.0)
    x, w = (jnp.asarray(a, jnp.float32) for a in _grid(family))
    exact = jax.grad(lambda p: jnp.sum(w * f(x) * jnp.exp(jax.vmap(family.log_prob, (None, 0))(p, x))))(params)
    u = jax.random.uniform(jax.random.key(7), (20_000, family.num_uniforms))
    per_sample = jax.vmap(jax.grad(lambda p, v: f(family.sample(p, v))), (None, 0))(params, u)
    mean, stderr = np.asarray(per_sample.mean(0)), np.asarray(per_sample.std(0)) / np.sqrt(len(u))
    assert np.all(np.abs(mean - np.asarray(exact)) < 5 * stderr + 1e-3), (mean, exact, stderr)
