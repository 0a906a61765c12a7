"""NumPyro SVI with autoregressive guides: a guide builder and a leave-one-out ELBO.

``autoregressive_guide(net, site)`` registers an autoregressive net with
``numpyro.contrib.module.eqx_module`` and samples the discrete site from ``arjax.Autoregressive``.
Discrete sites are not reparameterisable, so the ELBO gradient needs a score-function term:
``numpyro.infer.TraceGraph_ELBO`` adds one (without a baseline), ``LeaveOneOutELBO`` adds one with
the leave-one-out baseline over its particles, and ``Trace_ELBO`` silently drops it — the guide
refuses to run under an ELBO that cannot infer discrete sites.

With a model ``x ~ p(x)``, ``y ~ p(y|x)``, ``-ELBO(q) = E_q[-ln p(y|x)] + KL(q ‖ p) - 0``, which is
``arjax.objectives.reward_loss`` with ``r(x) = ln p(y|x)``, ``prior=p`` and ``kl_weight=1``: SVI and
``arjax.train.fit_reward`` have the same optimum, the posterior ``p(x|y)``.
"""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
from jaxtyping import Array, Float, PRNGKeyArray
from numpyro.contrib.module import eqx_module
from numpyro.infer import SVI
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import get_importance_trace

from arjax.distribution import Autoregressive
from arjax.objectives import BASELINES, score_function_surrogate

__all__ = ["LeaveOneOutELBO", "autoregressive_guide", "guide_net"]


class LeaveOneOutELBO(ELBO):
    r"""Negative ELBO with a leave-one-out (RLOO) score-function gradient for discrete guide sites.

    For ``P`` particles ``z_b ~ q`` with ``w_b = ln p(y, z_b) - ln q(z_b)``, the loss value is
    ``-mean(w)`` and its gradient is

    ``-(1/P) Σ_b [∇_path w_b + (w_b - c_b) ∇ ln q_d(z_b)]``,  ``c_b = (Σ_{b'≠b} w_{b'})/(P - 1)``,

    where ``q_d`` is the product over the guide's non-reparameterisable sites (e.g. an
    ``arjax.Autoregressive``) and ``∇_path`` differentiates through reparameterised sites and the
    model's own parameters. ``c_b`` does not depend on ``z_b``, so the estimator is unbiased; unlike
    ``TraceGraph_ELBO`` (no baseline) its variance vanishes as ``q`` approaches the posterior.
    The score term uses the whole particle's ``w_b`` (no Rao–Blackwellisation over the dependency
    graph), which is the right choice for one autoregressive site. ``baseline="mean"`` uses the
    particle mean instead.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import SVI
        >>> from arjax import Autoregressive
        >>> from arjax.nn import MADE
        >>> prior = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
        >>> def model(y):
        ...     x = numpyro.sample("x", Autoregressive(prior))
        ...     numpyro.sample("y", dist.Normal(jnp.sum(x), 1.0), obs=y)
        >>> guide = autoregressive_guide(prior, "x")
        >>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), LeaveOneOutELBO(num_particles=16))
        >>> result = svi.run(jax.random.key(1), 20, 3.0, progress_bar=False)
        >>> result.losses.shape
        (20,)
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 16, vectorize_particles: bool = True, *, baseline: str = "loo"):
        if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 2:
            raise ValueError(f"num_particles must be an integer ≥ 2 (the baseline needs a batch), got {num_particles}")
        if baseline not in BASELINES:
            raise ValueError(f'baseline must be "loo" or "mean", got {baseline!r}')
        self.baseline = baseline
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def loss(self, rng_key: PRNGKeyArray, param_map, model, guide, *args, **kwargs) -> Float[Array, ""]:
        """``-ELBO`` estimated from ``num_particles`` particles, with the leave-one-out gradient."""

        def particle(key):
            model_seed, guide_seed = jax.random.split(key)
            model_trace, guide_trace = get_importance_trace(
                numpyro.handlers.seed(model, model_seed), numpyro.handlers.seed(guide, guide_seed),
                args, kwargs, param_map,
            )
            log_p = sum((jnp.sum(s["log_prob"]) for s in model_trace.values() if s["type"] == "sample"), jnp.zeros(()))
            log_q_path, log_q_score = jnp.zeros(()), jnp.zeros(())
            for site in guide_trace.values():
                if site["type"] == "sample" and not site.get("is_observed", False):
                    if site["fn"].has_rsample:
                        log_q_path = log_q_path + jnp.sum(site["log_prob"])
                    else:
                        log_q_score = log_q_score + jnp.sum(site["log_prob"])
            return log_p - log_q_path, log_q_score

        path, log_q_score = self.vectorize_particles_fn(particle, jax.random.split(rng_key, self.num_particles))
        log_weight = path - jax.lax.stop_gradient(log_q_score)
        pathwise = jnp.mean(log_weight) - jax.lax.stop_gradient(jnp.mean(log_weight))
        return score_function_surrogate(-log_weight, log_q_score, baseline=self.baseline) - pathwise


def autoregressive_guide(net: eqx.Module, site: str = "x", *, name: str | None = None, allowed=None):
    """A NumPyro guide ``guide(*args, **kwargs)`` sampling ``site`` from ``Autoregressive(net)``.

    The net's parameters are registered with ``numpyro.contrib.module.eqx_module(name, net)``
    (``name`` defaults to ``f"{site}_net"``); start from a pretrained prior by passing its net.
    With tokens, under an ELBO that cannot infer discrete sites (``Trace_ELBO``,
    ``TraceMeanField_ELBO``, ``RenyiELBO``: they drop the score-function term and would silently not
    learn) the guide raises ``TypeError``; use ``LeaveOneOutELBO`` or
    ``numpyro.infer.TraceGraph_ELBO``. A net with only real, circular or positive positions is
    reparameterised, and ``Trace_ELBO`` is the right choice. Read the trained net back with
    ``guide_net(params, net, site)``.

    Example:
        >>> import jax
        >>> from numpyro.handlers import seed, trace
        >>> from arjax.nn import MADE
        >>> guide = autoregressive_guide(MADE(num_positions=3, num_categories=2, key=jax.random.key(0)), "x")
        >>> trace(seed(guide, 0)).get_trace()["x"]["value"].shape
        (3,)
    """
    if not isinstance(site, str):
        raise TypeError(f"site must be a string (the name of the sample site), got {site!r}")
    reparameterized = Autoregressive(net, allowed=allowed).has_rsample
    module_name = name if name is not None else f"{site}_net"

    def guide(*args, **kwargs):
        if not reparameterized:
            _refuse_elbo_without_discrete_support(site)
        return numpyro.sample(site, Autoregressive(eqx_module(module_name, net), allowed=allowed))

    return guide


def guide_net(params: dict, net: eqx.Module, site: str = "x", *, name: str | None = None) -> eqx.Module:
    """The trained net of ``autoregressive_guide(net, site)`` from SVI's ``params``.

    >>> import jax
    >>> from arjax.nn import MeanField
    >>> net = MeanField(3, 2, key=jax.random.key(0))
    >>> params = {"x_net$params": eqx.partition(net, eqx.is_inexact_array)[0]}
    >>> guide_net(params, net).num_positions
    3
    """
    module_name = (name if name is not None else f"{site}_net") + "$params"
    if module_name not in params:
        raise KeyError(f"params has no entry {module_name!r}; it has {sorted(params)}")
    return eqx.combine(params[module_name], eqx.partition(net, eqx.is_inexact_array)[1])


def _refuse_elbo_without_discrete_support(site: str) -> None:
    frame = inspect.currentframe()
    try:
        for _ in range(64):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return
            owner = frame.f_locals.get("self")
            loss = owner.loss if isinstance(owner, SVI) else owner
            if isinstance(loss, ELBO) and not loss.can_infer_discrete:
                raise TypeError(
                    f"{type(loss).__name__} ignores the score-function gradient of the discrete site {site!r}, so "
                    f"the autoregressive guide would not learn; use arjax.svi.LeaveOneOutELBO(num_particles) or "
                    f"numpyro.infer.TraceGraph_ELBO"
                )
    finally:
        del frame
