r"""NumPyro kernels that sample an ``arjax.Autoregressive`` site with the arjax MCMC kernels.

``IndependenceKernel`` and ``ClozeKernel`` are ``numpyro.infer.mcmc.MCMCKernel``\ s for a model with
one latent sequence site ``x = numpyro.sample("x", arjax.Autoregressive(...))`` and observed sites;
``numpyro.infer.MCMC`` then gives chains (``chain_method="vectorized"`` included), a progress bar,
``get_samples`` and ``print_summary``. With continuous latents too, use them as blocks of
``numpyro.infer.Gibbs`` (e.g. ``Gibbs([(ClozeKernel(model), ["x"]), (NUTS(model), None)])``), or
pass ``gibbs_fn(model, "x", ...)`` to ``numpyro.infer.HMCGibbs``. The target is the model's log joint
density at ``x``, with every other latent site fixed to the values the composite kernel hands over.

The site may be batched: sequences in a ``numpyro.plate``, or a site inside
``numpyro.contrib.control_flow.scan``, whose value stacks one sequence per time step (``[T, N]``, or
``[T, P, N]`` with a plate in the step). The kernels then sample the whole value as one sequence of
``T·N`` positions in C order (position ``t * N + i`` is ``x[t, i]``), and read the site's distribution
off the model at the value in question: when step ``t``'s context is carried over from ``x[t - 1]``,
the prior that independence MH proposes from is the joint prior through time (drawn by running the
model forward), and cloze's conditional of ``x[t, i]`` reads ``x[t, :i]`` and the earlier steps.
"""

import copy
import math
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro.distributions import Distribution
from numpyro.distributions.distribution import ExpandedDistribution, MaskedDistribution
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.gibbs import conditioned, latent_sample_sites, prototype_trace, with_conditioning
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import log_density
from numpyro.util import identity, is_prng_key

from arjax.mcmc import cloze as _cloze
from arjax.mcmc import independence as _independence

__all__ = ["IndependenceKernel", "IndependenceKernelState", "ClozeKernel", "ClozeKernelState", "gibbs_fn"]


class IndependenceKernelState(NamedTuple):
    """State of ``IndependenceKernel``.

    z
        ``{site: x}``, the current sequence.
    logdensity
        Log joint density of the model at ``z`` under the current conditioning.
    proposal_logdensity
        ``ln q(x)`` under the proposal.
    accept_prob
        Acceptance probability of the last step.
    mean_accept_prob
        Mean acceptance probability over all steps so far.
    num_steps
        Steps taken so far.
    rng_key
        Random key for the next step.
    """

    z: dict
    logdensity: Float[Array, ""]
    proposal_logdensity: Float[Array, ""]
    accept_prob: Float[Array, ""]
    mean_accept_prob: Float[Array, ""]
    num_steps: Int[Array, ""]
    rng_key: PRNGKeyArray


class ClozeKernelState(NamedTuple):
    """State of ``ClozeKernel``.

    z
        ``{site: x}``, the current sequence.
    logdensity
        Log joint density of the model at ``z`` under the current conditioning.
    accept_prob
        Mean acceptance probability over the positions of the last sweep (1 for ``"gibbs"``).
    mean_accept_prob
        Mean of ``accept_prob`` over all sweeps so far.
    num_changed
        Positions changed by the last sweep.
    num_steps
        Sweeps taken so far.
    rng_key
        Random key for the next step.
    """

    z: dict
    logdensity: Float[Array, ""]
    accept_prob: Float[Array, ""]
    mean_accept_prob: Float[Array, ""]
    num_changed: Int[Array, ""]
    num_steps: Int[Array, ""]
    rng_key: PRNGKeyArray


class _SiteKernel(MCMCKernel):
    """Shared plumbing: one latent sequence site, conditioning, chains, Gibbs-block hooks."""

    sample_field = "z"

    def __init__(self, model: Callable, site: str | None = None):
        if not callable(model):
            raise TypeError(f"model must be a NumPyro model (a callable), got {type(model).__name__}")
        if site is not None and not isinstance(site, str):
            raise TypeError(f"site must be the name of a sample site (a str) or None, got {site!r}")
        self._model = model
        self._site = site
        self._reset()

    def _reset(self):
        self._resolved_site = None
        self._site_shape = None
        self._num_categories = None
        self._has_deterministic = False
        self._resolved_proposal = None

    @property
    def model(self) -> Callable:
        return self._model

    @property
    def site(self) -> str | None:
        """The name of the sampled site (resolved at ``init`` when given as ``None``)."""
        return self._resolved_site or self._site

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
        batched = not is_prng_key(rng_key)
        self._resolve(rng_key[0] if batched else rng_key, model_args, model_kwargs)
        if isinstance(init_params, dict):
            unknown = sorted(set(init_params) - {self._resolved_site})
            if unknown:
                raise ValueError(f"init_params has sites {unknown} that {type(self).__name__} does not sample")
            init_params = init_params.get(self._resolved_site)
        if init_params is not None:
            shape = (len(rng_key),) if batched else ()
            _check_batched_position(init_params, shape, self._site_shape, self._num_categories, self._resolved_site)
            init_params = jnp.reshape(init_params, shape + (-1,))  # the kernels see one flat sequence
        # Compiled at once: run op by op, a model with ``scan`` would compile each of its primitives separately.
        return eqx.filter_jit(lambda k, x: self._init_chains(k, x, model_args, model_kwargs))(rng_key, init_params)

    def _init_chains(self, rng_key, init_params, model_args, model_kwargs):
        """One chain, or a batch of them for ``chain_method="vectorized"``."""
        if is_prng_key(rng_key):
            return self._init_one(rng_key, init_params, model_args, model_kwargs)
        in_axes = (0, None if init_params is None else 0)
        return jax.vmap(lambda k, x: self._init_one(k, x, model_args, model_kwargs), in_axes=in_axes)(
            rng_key, init_params
        )

    def sample(self, state, model_args, model_kwargs):
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if jnp.ndim(state.logdensity) > 0:
            return jax.vmap(lambda s: self._sample_one(s, model_args, model_kwargs))(state)
        return self._sample_one(state, model_args, model_kwargs)

    def refresh(self, state, model_args, model_kwargs):
        """Recompute the cached log densities at the current ``x`` under new conditioning values."""
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if jnp.ndim(state.logdensity) > 0:
            return jax.vmap(lambda s: self._refresh_one(s, model_args, model_kwargs))(state)
        return self._refresh_one(state, model_args, model_kwargs)

    def wrap_model(self, wrapper):
        """A copy of this kernel bound to ``wrapper(model)`` (``numpyro.infer.Gibbs`` uses this)."""
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    def get_constrain_fn(self, model_args, model_kwargs):
        """Identity: tokens are already in the site's support."""
        return identity

    def postprocess_fn(self, model_args, model_kwargs):
        """Identity, or a replay of the model that adds its ``deterministic`` sites."""
        if not self._has_deterministic:
            return identity
        model_kwargs = {} if model_kwargs is None else model_kwargs

        def replay(z):
            model = substitute(seed(conditioned(self._model), 0), data=z)
            model_trace = trace(model).get_trace(*model_args, **model_kwargs)
            extra = {name: s["value"] for name, s in model_trace.items() if s["type"] == "deterministic"}
            return {**z, **extra}

        return replay

    def get_diagnostics_str(self, state) -> str:
        return f"acc. prob={float(jnp.mean(state.mean_accept_prob)):.2f}"

    def _resolve(self, rng_key, model_args, model_kwargs) -> None:
        def read_off(key):  # traced abstractly: only static facts leave it, and nothing is compiled
            model_trace = prototype_trace(conditioned(self._model), key, model_args, model_kwargs)
            self._resolved_site, self._site_shape, self._num_categories = _resolve_site(
                model_trace, self._site, type(self).__name__
            )
            self._has_deterministic = any(s["type"] == "deterministic" for s in model_trace.values())

        jax.eval_shape(read_off, rng_key)

    def _target(self, model_args, model_kwargs):
        probe = jnp.zeros(self._site_shape, jnp.int32)
        return _site_target(self._model, self._resolved_site, model_args, model_kwargs, probe)

    def _resolve_proposal(self, proposal, check: Callable):
        return _proposal_for_site(proposal, check, self._resolved_site, self._site_shape, self._num_categories)

    def _z(self, position) -> dict:
        return {self._resolved_site: position.reshape(self._site_shape)}

    def _position(self, state):
        return state.z[self._resolved_site].reshape(-1)

    def _initial_position(self, key, init_position, site_fn):
        if init_position is None:
            return jnp.asarray(site_fn.sample(key)).astype(jnp.int32)
        return jnp.asarray(init_position)


class IndependenceKernel(_SiteKernel):
    r"""Independence Metropolis–Hastings for an ``arjax.Autoregressive`` site of a NumPyro model.

    Each step draws a whole sequence from ``proposal`` and accepts it with probability
    ``min[1, π(x') q(x) / π(x) q(x')]``, ``π`` being the model's joint density at ``x`` (other
    latent sites fixed by the enclosing ``Gibbs``). The default proposal is the site's own prior
    (for a site inside ``scan``, its joint prior through time), so the ratio reduces to the
    likelihood ratio.

    Args:
        model: a NumPyro model.
        site: name of the latent sequence site; ``None`` picks the model's only unobserved
            ``Autoregressive`` site.
        proposal: an ``arjax.Autoregressive`` (or any distribution over ``Int[N]`` with ``sample``
            and ``log_prob``) to propose from, e.g. a net trained on the posterior; for a batched
            site, one whose ``batch_shape + event_shape`` is the site's value shape (e.g. ``(T, N)``);
            ``None`` uses the distribution at the site.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=5, num_categories=2, key=jax.random.key(0))
        >>> def model(y):
        ...     x = numpyro.sample("x", Autoregressive(net))
        ...     numpyro.sample("y", dist.Normal(x.sum().astype(jnp.float32), 1.0), obs=y)
        >>> mcmc = MCMC(IndependenceKernel(model), num_warmup=50, num_samples=200, num_chains=2,
        ...             chain_method="vectorized", progress_bar=False)
        >>> mcmc.run(jax.random.key(1), 3.0)
        >>> mcmc.get_samples()["x"].shape
        (400, 5)
    """

    def __init__(self, model: Callable, site: str | None = None, proposal: Distribution | None = None):
        super().__init__(model, site)
        if proposal is not None and not (callable(getattr(proposal, "sample", None))
                                         and callable(getattr(proposal, "log_prob", None))):  # fmt: skip
            raise TypeError(
                f"proposal must be a distribution with sample and log_prob (e.g. arjax.Autoregressive), "
                f"got {type(proposal).__name__}"
            )
        self._proposal = proposal
        self._kernel = _independence.build_kernel()

    def _resolve(self, rng_key, model_args, model_kwargs) -> None:
        super()._resolve(rng_key, model_args, model_kwargs)
        if self._proposal is not None:
            self._resolved_proposal = self._resolve_proposal(self._proposal, _independence.check_proposal)

    def _init_one(self, rng_key, init_position, model_args, model_kwargs) -> IndependenceKernelState:
        rng_key, key_init = jax.random.split(rng_key)
        logdensity_fn, site_fn = self._target(model_args, model_kwargs)
        position = self._initial_position(key_init, init_position, site_fn)
        state = _independence.init(position, logdensity_fn, self._resolved_proposal or site_fn)
        zero = jnp.zeros((), state.logdensity.dtype)
        return IndependenceKernelState(
            self._z(state.position), state.logdensity, state.proposal_logdensity, zero, zero,
            jnp.zeros((), jnp.int32), rng_key,
        )

    def _sample_one(self, state, model_args, model_kwargs) -> IndependenceKernelState:
        logdensity_fn, site_fn = self._target(model_args, model_kwargs)
        rng_key, key_step = jax.random.split(state.rng_key)
        chain = _independence.IndependenceState(self._position(state), state.logdensity, state.proposal_logdensity)
        chain, info = self._kernel(key_step, chain, logdensity_fn, self._resolved_proposal or site_fn)
        num_steps = state.num_steps + 1
        accept_prob = info.acceptance_rate.astype(state.accept_prob.dtype)
        mean_accept_prob = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / num_steps
        return IndependenceKernelState(
            self._z(chain.position), chain.logdensity, chain.proposal_logdensity, accept_prob,
            mean_accept_prob, num_steps, rng_key,
        )

    def _refresh_one(self, state, model_args, model_kwargs) -> IndependenceKernelState:
        logdensity_fn, site_fn = self._target(model_args, model_kwargs)
        position = self._position(state)
        logdensity = _independence.safe_logdensity(logdensity_fn(position)).astype(state.logdensity.dtype)
        proposal_logdensity = state.proposal_logdensity
        if self._proposal is None:
            proposal_logdensity = jnp.asarray(site_fn.log_prob(position)).astype(proposal_logdensity.dtype)
        return state._replace(logdensity=logdensity, proposal_logdensity=proposal_logdensity)


class ClozeKernel(_SiteKernel):
    r"""Cloze sweeps over chosen positions of an ``arjax.Autoregressive`` site of a NumPyro model.

    One MCMC step sweeps ``positions`` once: ``mode="gibbs"`` draws each position from its exact
    conditional under the model's joint density (``K`` evaluations in one batch), ``mode="mh"``
    proposes from the autoregressive conditional ``p(x_i | x_{<i})`` and corrects with
    Metropolis–Hastings. Positions outside ``positions`` keep their initial values (pass them in
    ``init_params`` to fill in a partly known sequence).

    Args:
        model: a NumPyro model.
        site: name of the latent sequence site; ``None`` picks the model's only unobserved
            ``Autoregressive`` site.
        positions: distinct positions to resample, in visiting order; ``None`` sweeps all. For a
            batched site they index its value flattened in C order (``t * N + i`` for ``x[t, i]`` of a
            ``[T, N]`` site inside ``scan``).
        mode: ``"gibbs"`` or ``"mh"``.
        proposal: the ``arjax.Autoregressive`` whose ``allowed`` rule and (for ``"mh"``)
            conditionals are used, of the site's value shape; ``None`` uses the distribution at the site.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=5, num_categories=3, key=jax.random.key(0))
        >>> def model(y):
        ...     x = numpyro.sample("x", Autoregressive(net))
        ...     numpyro.sample("y", dist.Normal(x.sum().astype(jnp.float32), 1.0), obs=y)
        >>> mcmc = MCMC(ClozeKernel(model, mode="mh"), num_warmup=20, num_samples=100, progress_bar=False)
        >>> mcmc.run(jax.random.key(1), 4.0)
        >>> mcmc.get_samples()["x"].shape
        (100, 5)
    """

    def __init__(
        self,
        model: Callable,
        site: str | None = None,
        positions: Sequence[int] | Int[Array, " M"] | None = None,
        mode: str = "gibbs",
        proposal: Distribution | None = None,
    ):
        super().__init__(model, site)
        self._mode = _cloze.check_mode(mode)
        if positions is not None:
            positions = _cloze.check_positions(positions, sys.maxsize)
        if proposal is not None and not (callable(getattr(proposal, "conditional_log_probs", None))
                                         and isinstance(getattr(proposal, "num_categories", None), int)):  # fmt: skip
            raise TypeError(f"proposal must be an arjax.Autoregressive distribution, got {type(proposal).__name__}")
        self._positions = positions
        self._proposal = proposal
        self._kernel = _cloze.build_kernel(mode)

    def _resolve(self, rng_key, model_args, model_kwargs) -> None:
        super()._resolve(rng_key, model_args, model_kwargs)
        self._resolved_positions = _cloze.check_positions(self._positions, math.prod(self._site_shape))
        if self._proposal is not None:
            self._resolved_proposal = self._resolve_proposal(self._proposal, _cloze.check_model)

    def _conditionals(self, site_fn):
        model = self._resolved_proposal or site_fn
        _cloze.check_model(model)
        return model

    def _init_one(self, rng_key, init_position, model_args, model_kwargs) -> ClozeKernelState:
        rng_key, key_init = jax.random.split(rng_key)
        logdensity_fn, site_fn = self._target(model_args, model_kwargs)
        position = self._initial_position(key_init, init_position, site_fn)
        state = _cloze.init(position, logdensity_fn, self._conditionals(site_fn))
        zero = jnp.zeros((), state.logdensity.dtype)
        return ClozeKernelState(
            self._z(state.position), state.logdensity, zero, zero, jnp.zeros((), jnp.int32),
            jnp.zeros((), jnp.int32), rng_key,
        )

    def _sample_one(self, state, model_args, model_kwargs) -> ClozeKernelState:
        logdensity_fn, site_fn = self._target(model_args, model_kwargs)
        rng_key, key_step = jax.random.split(state.rng_key)
        chain = _cloze.ClozeState(self._position(state), state.logdensity)
        positions = jnp.asarray(self._resolved_positions)
        chain, info = self._kernel(key_step, chain, logdensity_fn, self._conditionals(site_fn), positions)
        num_steps = state.num_steps + 1
        accept_prob = info.acceptance_rate.astype(state.accept_prob.dtype)
        mean_accept_prob = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / num_steps
        return ClozeKernelState(
            self._z(chain.position), chain.logdensity, accept_prob, mean_accept_prob,
            info.num_changed, num_steps, rng_key,
        )

    def _refresh_one(self, state, model_args, model_kwargs) -> ClozeKernelState:
        logdensity_fn, _ = self._target(model_args, model_kwargs)
        logdensity = _independence.safe_logdensity(logdensity_fn(self._position(state)))
        return state._replace(logdensity=logdensity.astype(state.logdensity.dtype))

    def get_diagnostics_str(self, state) -> str:
        changed = f"changed={float(jnp.mean(state.num_changed)):.2g}"
        if self._mode == "gibbs":
            return changed
        return f"acc. prob={float(jnp.mean(state.mean_accept_prob)):.2f} {changed}"


def gibbs_fn(
    model: Callable,
    site: str,
    *,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    algorithm: str = "cloze",
    positions: Sequence[int] | None = None,
    mode: str = "gibbs",
    proposal: Distribution | None = None,
    num_steps: int = 1,
) -> Callable:
    r"""A ``gibbs_fn`` for ``numpyro.infer.HMCGibbs`` that updates the sequence site ``site``.

    Returns ``fn(rng_key, gibbs_sites, hmc_sites) -> {site: x}``, which runs ``num_steps`` steps of
    the cloze sampler (``algorithm="cloze"``, with ``positions`` and ``mode``) or of independence MH
    (``algorithm="independence"``, with ``proposal``, default the site's prior) on the model's
    joint density with the HMC sites fixed. ``model_args``/``model_kwargs`` must be the arguments
    given to ``MCMC.run``. A batched site (a plate, ``scan``) is sampled as one flattened sequence,
    as in ``ClozeKernel`` and ``IndependenceKernel``.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import MCMC, NUTS, HMCGibbs
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
        >>> def model(y):
        ...     x = numpyro.sample("x", Autoregressive(net))
        ...     sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        ...     numpyro.sample("y", dist.Normal(x.sum().astype(jnp.float32), sigma), obs=y)
        >>> y = jnp.array([2.1, 1.9, 2.0])
        >>> kernel = HMCGibbs(NUTS(model), gibbs_fn=gibbs_fn(model, "x", model_args=(y,)), gibbs_sites=["x"])
        >>> mcmc = MCMC(kernel, num_warmup=50, num_samples=50, progress_bar=False)
        >>> mcmc.run(jax.random.key(1), y)
        >>> sorted(mcmc.get_samples())
        ['sigma', 'x']
    """
    if not callable(model):
        raise TypeError(f"model must be a NumPyro model (a callable), got {type(model).__name__}")
    if not isinstance(site, str):
        raise TypeError(f"site must be the name of a sample site (a str), got {site!r}")
    if algorithm not in ("cloze", "independence"):
        raise ValueError(f"algorithm must be 'cloze' or 'independence', got {algorithm!r}")
    _independence.check_positive_int("num_steps", num_steps)
    _cloze.check_mode(mode)
    if positions is not None:
        positions = _cloze.check_positions(positions, sys.maxsize)
    if proposal is not None and not (callable(getattr(proposal, "sample", None))
                                     and callable(getattr(proposal, "log_prob", None))):  # fmt: skip
        raise TypeError(
            f"proposal must be a distribution with sample and log_prob (e.g. arjax.Autoregressive), "
            f"got {type(proposal).__name__}"
        )
    model_args = tuple(model_args)
    model_kwargs = {} if model_kwargs is None else dict(model_kwargs)

    def update(rng_key, gibbs_sites, hmc_sites):
        kwargs = with_conditioning(model_kwargs, hmc_sites)
        value = gibbs_sites[site]
        logdensity_fn, site_fn = _site_target(model, site, model_args, kwargs, value)
        if algorithm == "independence":
            q = site_fn
            if proposal is not None:
                q = _proposal_for_site(proposal, _independence.check_proposal, site, jnp.shape(value),
                                       _num_categories(site_fn))  # fmt: skip
            sampler = _independence.as_top_level_api(logdensity_fn, q)
        else:
            sampler = _cloze.as_top_level_api(logdensity_fn, site_fn, positions, mode)

        def one_step(state, key):
            return sampler.step(key, state)[0], None

        start = sampler.init(jnp.reshape(value, -1))
        state, _ = jax.lax.scan(one_step, start, jax.random.split(rng_key, num_steps))
        return {site: state.position.reshape(jnp.shape(value))}

    return update


def _site_target(model, site, model_args, model_kwargs, probe):
    """``(logdensity_fn, site_fn)`` on the site's value flattened to one sequence (a no-op for an unbatched site).

    ``logdensity_fn`` is the model's log joint; ``site_fn`` the distribution at the site, or for a
    batched site (values ``probe.shape``, e.g. ``[T, N]`` inside ``scan``) a ``_FlatSite`` that reads
    it from the model at each value.
    """
    conditioned_model = conditioned(model)
    seeded = seed(conditioned_model, 0)
    shape = jnp.shape(probe)

    def logdensity_fn(position):
        return log_density(seeded, model_args, model_kwargs, {site: position.reshape(shape)})[0]

    def site_at(value):
        return trace(substitute(seeded, data={site: value})).get_trace(*model_args, **model_kwargs)[site]

    probe_fn = site_at(probe)["fn"]
    if len(shape) == 1:
        return logdensity_fn, probe_fn

    def draw(key):
        drawn = trace(seed(conditioned_model, key)).get_trace(*model_args, **model_kwargs)[site]
        return drawn["value"], _site_log_prob(drawn)

    return logdensity_fn, _FlatSite(shape, _num_categories(probe_fn), lambda value: site_at(value)["fn"], draw,
                                    getattr(_unwrap(probe_fn), "allowed", None) is not None)  # fmt: skip


def _proposal_for_site(proposal, check: Callable, site: str, shape: tuple[int, ...], num_categories: int):
    """A user's ``proposal`` checked against the site: as it is for one sequence, flattened for a batched site."""
    if len(shape) == 1:
        check(proposal)
        sizes = (proposal.event_shape[0], getattr(proposal, "num_categories", None))
        if sizes != (shape[0], num_categories):
            raise ValueError(
                f"proposal has num_positions={sizes[0]}, num_categories={sizes[1]}, but site {site!r} has "
                f"{shape[0]}, {num_categories}"
            )
        return proposal
    proposal_shape = tuple(proposal.batch_shape) + tuple(proposal.event_shape)
    if proposal_shape != shape or getattr(proposal, "num_categories", None) != num_categories:
        raise ValueError(
            f"proposal must have batch_shape + event_shape {shape} and num_categories {num_categories} like site "
            f"{site!r}, got {proposal_shape} and {getattr(proposal, 'num_categories', None)}"
        )
    return _FlatSite.of_distribution(proposal)


class _FlatSite:
    """A batched sequence site (values ``Int[*shape]``: a plate, or ``[T, N]`` from ``scan``) as one distribution
    over the flattened value ``Int[M]``, ``M = prod(shape)`` in C order, for the kernels of ``arjax.mcmc``.

    ``fn_at(value)`` is the distribution that scores ``value`` and ``draw(key)`` gives a value with its
    log-probabilities. For a model's site both run the model: inside ``scan`` a context carried from
    step ``t - 1`` makes step ``t``'s distribution depend on the earlier steps of the value, so
    ``log_prob`` is the site's joint prior and ``sample`` draws through time. Position ``(t, i)``'s
    conditional reads only earlier positions, never ``x[t, i]`` itself, as cloze's ``"mh"`` needs.
    """

    batch_shape = ()

    def __init__(self, shape, num_categories: int, fn_at: Callable, draw: Callable, has_allowed: bool):
        self.value_shape = tuple(shape)
        self.num_positions = math.prod(self.value_shape)
        self.event_shape = (self.num_positions,)
        self.num_categories = num_categories
        self._fn_at, self._draw, self._has_allowed = fn_at, draw, has_allowed

    @classmethod
    def of_distribution(cls, d: Distribution) -> "_FlatSite":
        def draw(key):
            if callable(getattr(d, "sample_and_log_prob", None)):
                return d.sample_and_log_prob(key)
            value = d.sample(key)
            return value, d.log_prob(value)

        shape = tuple(d.batch_shape) + tuple(d.event_shape)
        return cls(shape, d.num_categories, lambda value: d, draw, getattr(_unwrap(d), "allowed", None) is not None)

    @property
    def allowed(self):
        """``None``, or for a site with an ``allowed`` rule, the flat rule read off the conditionals."""
        if not self._has_allowed:
            return None
        return lambda position, i: self.conditional_log_probs(position)[i] > -jnp.inf

    def log_prob(self, position) -> Float[Array, ""]:
        value = jnp.reshape(position, self.value_shape)
        return jnp.sum(self._fn_at(value).log_prob(value))

    def sample_and_log_prob(self, key) -> tuple[Int[Array, " M"], Float[Array, ""]]:
        value, log_prob = self._draw(key)
        return jnp.reshape(value, -1), jnp.sum(log_prob)

    def sample(self, key) -> Int[Array, " M"]:
        return self.sample_and_log_prob(key)[0]

    def conditional_log_probs(self, position) -> Float[Array, "M K"]:
        value = jnp.reshape(position, self.value_shape)
        fn = _unwrap(self._fn_at(value))
        if not callable(getattr(fn, "conditional_log_probs", None)):
            raise TypeError(f"the site must be an arjax.Autoregressive to propose from its conditionals, got "
                            f"{type(fn).__name__}")  # fmt: skip
        log_probs = fn.conditional_log_probs(value)
        return jnp.broadcast_to(log_probs, self.value_shape + log_probs.shape[-1:]).reshape(self.num_positions, -1)


def _unwrap(fn):
    """The distribution under NumPyro's plate expansion and masking."""
    while isinstance(fn, (ExpandedDistribution, MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _site_log_prob(site) -> Array:
    if site["intermediates"]:
        return site["fn"].log_prob(site["value"], site["intermediates"])
    return site["fn"].log_prob(site["value"])


def _num_categories(fn) -> int:
    num_categories = getattr(fn, "num_categories", None)
    if num_categories is None:
        num_categories = int(fn.support.base_constraint.upper_bound) + 1
    return num_categories


def _resolve_site(model_trace, site, kernel_name):
    latent = [
        name for name in latent_sample_sites(model_trace) if model_trace[name]["infer"].get("enumerate") != "parallel"
    ]
    if site is None:
        candidates = [name for name in latent if _is_sequence_distribution(model_trace[name]["fn"])]
        if len(candidates) != 1:
            raise ValueError(
                f"site=None needs exactly one unobserved arjax.Autoregressive site, found {candidates}; pass site=..."
            )
        site = candidates[0]
    elif site not in model_trace or model_trace[site]["type"] != "sample":
        raise ValueError(f"site {site!r} is not a sample site of the model")
    elif model_trace[site]["is_observed"]:
        raise ValueError(f"site {site!r} is observed; {kernel_name} samples a latent site")
    elif site not in latent:
        raise ValueError(f"site {site!r} is not a latent site of the model (it is enumerated or conditioned)")
    others = [name for name in latent if name != site]
    if others:
        raise ValueError(
            f"{kernel_name} samples only the site {site!r}, but the model has other latent sites {others}; "
            "condition on them, or use the kernel as a block of numpyro.infer.Gibbs (or gibbs_fn with HMCGibbs)"
        )
    fn = model_trace[site]["fn"]
    if not _is_sequence_distribution(fn):
        raise ValueError(
            f"site {site!r} must hold discrete sequences (e.g. arjax.Autoregressive, in plates or scan), got "
            f"{type(fn).__name__} with batch_shape {fn.batch_shape} and event_shape {fn.event_shape}"
        )
    return site, tuple(jnp.shape(model_trace[site]["value"])), _num_categories(fn)


def _is_sequence_distribution(fn) -> bool:
    if len(fn.event_shape) != 1 or not fn.support.is_discrete:
        return False
    if isinstance(getattr(fn, "num_categories", None), int):
        return True
    upper = getattr(getattr(fn.support, "base_constraint", None), "upper_bound", None)
    try:
        int(upper)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return False
    return True


def _check_batched_position(position, chain_shape, site_shape, num_categories, site) -> None:
    position = jnp.asarray(position)
    if position.shape != chain_shape + site_shape:
        raise ValueError(
            f"init_params[{site!r}] must have shape {chain_shape + site_shape} (one value of the site per chain), "
            f"got shape {position.shape}"
        )
    _independence.check_position(position.reshape(-1), position.size, num_categories, f"init_params[{site!r}]")
