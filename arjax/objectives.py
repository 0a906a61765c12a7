"""Loss functions ``loss(net, key, ...) -> scalar`` to differentiate with ``jax.grad``.

``nll`` is forward KL to data (maximum likelihood); ``free_energy_loss`` is reverse KL to a
Boltzmann distribution (variational free energy, as in Variational Autoregressive Networks);
``reward_loss`` is KL-regularised reward maximisation, i.e. reverse KL to ``p(x) e^{r(x)/τ}``.
The last two share ``score_function_surrogate``, the REINFORCE estimator with a baseline.
``count_loss`` fits an importance-sampling proposal to the uniform distribution over the
solutions of a counting problem (forward KL or χ², from the proposal's own weighted samples).
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from arjax.allowed import Allowed
from arjax.distribution import Autoregressive, check_net
from arjax.estimators import FreeEnergyEstimate, check_beta, check_proposal, check_sizes, free_energy_statistics
from arjax.families.layout import net_layout
from arjax.sampling import sample_and_log_prob
from arjax.symmetry import symmetrized_log_prob, symmetrized_sample

__all__ = [
    "nll", "free_energy_loss", "reward_loss", "RewardEstimate", "score_function_surrogate", "check_gradient",
    "BASELINES", "check_reward_gradient", "count_loss", "CountLossEstimate", "DIVERGENCES", "as_proposal",
]  # fmt: skip

BASELINES = ("loo", "mean")
DIVERGENCES = ("forward_kl", "chi2")


def nll(net: eqx.Module, x: Int[Array, "B N"], *, context=None, allowed=None) -> Float[Array, ""]:
    r"""Mean negative log-likelihood ``-E_data[ln p(x)]`` in nats per sequence.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.nn import MeanField
        >>> net = MeanField(num_positions=3, num_categories=2, init_scale=0.0, key=jax.random.key(0))
        >>> round(float(nll(net, jnp.array([[0, 1, 1]]))), 4)   # uniform: 3 ln 2
        2.0794
    """
    return -jnp.mean(Autoregressive(net, context, allowed).log_prob(x))


def free_energy_loss(
    net: eqx.Module,
    key: PRNGKeyArray,
    target,
    beta: float | Float[Array, ""],
    num_samples: int,
    *,
    symmetry: str | None = None,
    has_aux: bool = False,
    sharding=None,
    gradient: str | None = None,
) -> Float[Array, ""] | tuple[Float[Array, ""], FreeEnergyEstimate]:
    r"""Variational free energy ``F = E_q[E(x) + T ln q(x)]`` with VAN's score-function gradient.

    The value is the Monte Carlo estimate of ``F`` (total, ``T = 1/β``) from ``num_samples``
    exact samples of ``q``. The gradient is the REINFORCE estimator with the batch-mean baseline
    (Wu, Wang, Zhang 2019): ``∇F ≈ T · mean[(f(x) - b) ∇ ln q(x)]`` with ``f = βE + ln q`` and
    ``b = mean f``; the baseline does not bias the gradient because ``E_q[∇ ln q] = 0``.

    ``gradient="pathwise"`` (the default when every position is real, circular or positive)
    differentiates through the samples instead: ``x = x(u; θ)`` by the families' implicit
    reparameterisation, ``∇F ≈ T · mean ∇_θ[βE(x) + ln q_{θ'}(x)]|_{θ'=θ}`` with the parameters of
    ``ln q`` held fixed ("sticking the landing", Roeder, Wu, Duvenaud 2017: its variance vanishes
    as ``q`` reaches the target). It needs ``target.energy`` differentiable in ``x`` and periodic in
    circular values. ``gradient="score"`` is the default, and the only choice, with tokens.

    ``symmetry="z2"`` (two categories only) uses ``q_z2(x) = ½[q(x) + q(1-x)]``, VAN's ``--z2``.
    ``has_aux=True`` also returns the batch's ``FreeEnergyEstimate`` (for
    ``jax.value_and_grad(..., has_aux=True)``). ``sharding`` (``arjax.parallel.batch_sharding``)
    splits the samples over devices without changing them.

    Example:
        >>> import jax
        >>> from arjax.nn import MADE
        >>> from arjax.targets import IsingSquare
        >>> target = IsingSquare(3)
        >>> net = MADE(num_positions=9, num_categories=2, key=jax.random.key(0))
        >>> f, grads = jax.value_and_grad(free_energy_loss)(net, jax.random.key(1), target, 0.4, 256)
        >>> bool(f >= -target.exact_log_partition(0.4) / 0.4 - 1.0)
        True
    """
    check_sizes(net, target)
    beta = check_beta(beta)
    if check_gradient(net, gradient, symmetry) == "pathwise":
        x = symmetrized_sample(net, key, num_samples, symmetry, sharding=sharding, reparameterized=True)
        log_q = symmetrized_log_prob(jax.lax.stop_gradient(net), x, symmetry)
        energy = jax.vmap(target.energy)(x)
        loss = jnp.mean(beta * energy + log_q) / beta
    else:
        x = jax.lax.stop_gradient(symmetrized_sample(net, key, num_samples, symmetry, sharding=sharding))
        log_q = symmetrized_log_prob(net, x, symmetry)
        energy = jax.vmap(target.energy)(x)
        loss = score_function_surrogate(beta * energy + log_q, log_q, baseline="mean") / beta
    if not has_aux:
        return loss
    stats = free_energy_statistics(jax.lax.stop_gradient(energy), jax.lax.stop_gradient(log_q), beta)
    return loss, stats


def check_gradient(net, gradient: str | None, symmetry: str | None = None) -> str:
    """The free-energy gradient estimator for ``net``: ``gradient``, or the default for its families.

    >>> import jax
    >>> from arjax.nn import MADE
    >>> check_gradient(MADE(num_positions=3, num_categories=2, key=jax.random.key(0)), None)
    'score'
    """
    continuous = net_layout(net).categorical_size is None
    if gradient is None:
        return "pathwise" if continuous and symmetry is None else "score"
    if gradient not in ("score", "pathwise"):
        raise ValueError(f'gradient must be None, "score" or "pathwise", got {gradient!r}')
    if gradient == "pathwise" and not continuous:
        raise ValueError('gradient="pathwise" needs a net without token (Categorical) positions')
    if gradient == "pathwise" and symmetry is not None:
        raise ValueError(f'gradient="pathwise" does not support symmetry={symmetry!r}')
    return gradient


class RewardEstimate(NamedTuple):
    """Monte Carlo estimates from one batch of ``reward_loss`` (all per sequence, in nats).

    Attributes:
        objective: ``E_q[-r] + τ KL(q ‖ prior)`` with a prior, ``E_q[-r] + T E_q[ln q]`` without.
        objective_stderr: its Monte Carlo standard error.
        reward: ``E_q[r]``.
        kl: ``KL(q ‖ prior) = E_q[ln q - ln p]`` from the exact per-sample log-probabilities; without
            a prior, the KL to the uniform distribution, ``E_q[ln q] + N ln K`` (``E_q[ln q]`` for real-valued nets).
        entropy: ``S_q = -E_q[ln q]``.
    """

    objective: Float[Array, ""]
    objective_stderr: Float[Array, ""]
    reward: Float[Array, ""]
    kl: Float[Array, ""]
    entropy: Float[Array, ""]


def score_function_surrogate(
    f: Float[Array, " B"], log_q: Float[Array, " B"], *, baseline: str = "loo"
) -> Float[Array, ""]:
    r"""A scalar whose value is ``mean(f)`` and whose gradient is the REINFORCE estimator of ``∇E_q[f]``.

    ``f`` is held constant (``stop_gradient``); ``log_q`` are the differentiable ``ln q(x_b)`` of
    ``B`` exact samples ``x_b ~ q``. The gradient is ``(1/B) Σ_b (f_b - c_b) ∇ ln q(x_b)`` with the
    control variate ``c_b``:

    * ``baseline="loo"`` (leave-one-out, RLOO; Kool, van Hoof, Welling 2019):
      ``c_b = (Σ_{b'≠b} f_{b'}) / (B - 1)`` is independent of ``x_b``, so the estimator is unbiased.
      It equals the ``"mean"`` estimator times ``B / (B - 1)``.
    * ``baseline="mean"``: ``c_b = mean(f)`` (VAN's choice), biased by the factor ``(B - 1)/B``.

    When ``f`` itself depends on ``q`` only through ``ln q`` (as ``βE + ln q`` does), the missing
    ``E_q[∇ ln q] = 0`` term leaves the estimator unchanged. A non-finite ``f_b`` makes the whole
    gradient non-finite, so the ``arjax.train`` loops skip the step.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> log_q = lambda t: jnp.array([jax.nn.log_sigmoid(t), jax.nn.log_sigmoid(-t)])  # samples x=1, x=0
        >>> f = jnp.array([1.0, 0.0])
        >>> value, grad = jax.value_and_grad(lambda t: score_function_surrogate(f, log_q(t)))(0.3)
        >>> float(value), round(float(grad), 4)   # ½[(1 - 0)·σ(-t) + (0 - 1)·(-σ(t))]
        (0.5, 0.5)
    """
    if baseline not in BASELINES:
        raise ValueError(f'baseline must be "loo" or "mean", got {baseline!r}')
    f = jax.lax.stop_gradient(f)
    num_samples = f.shape[0]
    if num_samples < 2:
        raise ValueError(f"the baseline needs at least 2 samples, got {num_samples}")
    mean = jnp.mean(f)
    advantage = f - mean
    if baseline == "loo":
        advantage = advantage * (num_samples / (num_samples - 1))
    surrogate = jnp.mean(advantage * log_q)
    return surrogate - jax.lax.stop_gradient(surrogate) + mean


def reward_loss(
    q_net: eqx.Module,
    key: PRNGKeyArray,
    *,
    reward_fn: Callable[[Int[Array, " N"]], Float[Array, ""]],
    prior: Autoregressive | eqx.Module | None = None,
    kl_weight: float | Float[Array, ""] = 1.0,
    temperature: float | Float[Array, ""] = 1.0,
    num_samples: int,
    baseline: str = "loo",
    gradient: str = "score",
    has_aux: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], RewardEstimate]:
    r"""KL-regularised reward loss ``E_q[-r(x)] + τ KL(q ‖ p)`` with a leave-one-out score-function gradient.

    With a ``prior`` ``p`` the loss is ``E_q[-r] + τ E_q[ln q - ln p]`` (``τ = kl_weight``), which is
    ``τ KL(q ‖ p_r) - τ ln Z_r`` for the tilted distribution ``p_r(x) = p(x) e^{r(x)/τ} / Z_r``:
    RL fine-tuning of ``p`` is variational inference of ``p_r`` (with ``r = ln p(y|x)`` the
    posterior). Without a prior the loss is ``E_q[-r] + T E_q[ln q]`` (``T = temperature``),
    minimised by ``q ∝ e^{r/T}`` — entropy-regularised reward maximisation, the variational free
    energy of the energy ``-r`` at temperature ``T``.

    The value is the Monte Carlo estimate from ``num_samples`` exact samples of ``q``; the gradient
    is ``score_function_surrogate`` of ``f = -r + τ(ln q - ln p)`` (or ``-r + T ln q``) with the
    leave-one-out baseline (``baseline="loo"``, unbiased) or the batch mean (``"mean"``).

    ``gradient="pathwise"`` (nets with real, circular or positive positions, and a reward
    differentiable in them) differentiates through the continuous values instead: they are drawn
    by the families' implicit reparameterisation, ``x = x(u; θ)``, and the gradient is
    ``mean ∇_θ f(x(u; θ))`` with the parameters of ``ln q`` in ``f`` held fixed ("sticking the
    landing", as ``free_energy_loss``), plus the score-function term of the token positions
    only, ``mean[(f - c) ∇_θ Σ_{i token} ln q(x_i | x_{<i})]``. Both parts are unbiased, so the sum
    is an unbiased gradient of the loss; where the tokens' conditionals do not depend on ``θ``
    (``arjax.crystal.design.FrozenSkeleton``) the second part vanishes. A reward that pushes
    continuous values somewhere (apart, toward a target) then tells every sample which way to move,
    which a score-function gradient only learns from the spread of rewards across the batch; but its
    variance grows with the sensitivity of the sample path to the parameters, and through a long
    chain of sharp conditionals (a trained crystal model, ``docs/crystals.md``) it can exceed the
    score function's by orders of magnitude.

    Args:
        q_net: the autoregressive net of ``q`` (differentiated).
        reward_fn: ``r(x: Int[N]) -> Float[]`` for one sequence (``jax.vmap``-ed over the batch); a float
            sequence for nets with real-valued positions.
            A NaN reward makes the gradient NaN (the ``fit_*`` loops then skip the step).
        prior: ``None``, an ``arjax.Autoregressive`` or a net with the same ``N`` and ``K`` as
            ``q_net``; it is held fixed. ``q`` uses the prior's ``allowed`` rule, so it never puts
            mass where the prior has none.
        kl_weight: ``τ ≥ 0``, used with a prior.
        temperature: ``T ≥ 0``, used without one.
        gradient: ``"score"`` (any reward) or ``"pathwise"`` (see above).
        has_aux: also return a ``RewardEstimate`` (for ``jax.value_and_grad(..., has_aux=True)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from arjax.nn import MADE
        >>> net = MADE(num_positions=4, num_categories=2, key=jax.random.key(0))
        >>> loss, aux = reward_loss(net, jax.random.key(1), reward_fn=lambda x: jnp.sum(x) * 1.0,
        ...                         prior=net, kl_weight=0.5, num_samples=64, has_aux=True)
        >>> float(aux.kl)   # q is the prior
        0.0
        >>> grads = jax.grad(reward_loss)(net, jax.random.key(1), reward_fn=lambda x: jnp.sum(x) * 1.0,
        ...                               num_samples=64)
    """
    check_net(q_net, "q_net")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2 (the baseline needs a batch), got {num_samples!r}")
    if baseline not in BASELINES:
        raise ValueError(f'baseline must be "loo" or "mean", got {baseline!r}')
    prior = as_prior(prior, q_net)
    if prior is None:
        weight = _check_weight("temperature", temperature)
        _check_unused("kl_weight", kl_weight, "without a prior; use temperature")
        q = Autoregressive(q_net)
    else:
        weight = _check_weight("kl_weight", kl_weight)
        _check_unused("temperature", temperature, "with a prior; use kl_weight")
        q = Autoregressive(q_net, allowed=prior.allowed)
    _check_reward_fn(reward_fn, q_net)
    layout = net_layout(q_net)
    check_reward_gradient(gradient, q_net)
    if gradient == "pathwise":
        x = sample_and_log_prob(q_net, key, (num_samples,), allowed=q.allowed)[0]
        log_q = Autoregressive(jax.lax.stop_gradient(q_net), allowed=q.allowed).log_prob(x)
        reward = jax.vmap(reward_fn)(x).astype(jnp.result_type(float))
    else:
        x = jax.lax.stop_gradient(q.sample(key, (num_samples,)))
        log_q = q.log_prob(x)
        reward = jax.lax.stop_gradient(jax.vmap(reward_fn)(x).astype(jnp.result_type(float)))
    if prior is None:
        tokens = q_net.num_categories is not None  # against the uniform distribution; a density has no such reference
        log_ratio = log_q + q_net.num_positions * jnp.log(float(q_net.num_categories)) if tokens else log_q
        f = -reward + weight * log_q
    else:
        log_prior = prior.log_prob(x)
        log_ratio = log_q - (log_prior if gradient == "pathwise" else jax.lax.stop_gradient(log_prior))
        f = -reward + weight * log_ratio
    if gradient == "pathwise":
        per_position = q.position_log_probs(x)
        log_q_tokens = jnp.sum(jnp.where(layout.is_categorical, per_position, 0.0), axis=-1)
        mean = jnp.mean(f)
        loss = mean - jax.lax.stop_gradient(mean) + score_function_surrogate(f, log_q_tokens, baseline=baseline)
    else:
        loss = score_function_surrogate(f, log_q, baseline=baseline)
    if not has_aux:
        return loss
    f, log_q, log_ratio = jax.lax.stop_gradient((f, log_q, log_ratio))
    return loss, RewardEstimate(
        objective=jnp.mean(f),
        objective_stderr=jnp.std(f) / jnp.sqrt(num_samples),
        reward=jnp.mean(reward),
        kl=jnp.mean(log_ratio),
        entropy=-jnp.mean(log_q),
    )


def check_reward_gradient(gradient, q_net) -> None:
    """Raise ``ValueError`` unless ``gradient`` is ``"score"``, or ``"pathwise"`` for a net with real-valued positions.

    >>> import jax
    >>> from arjax.nn import MADE
    >>> check_reward_gradient("score", MADE(num_positions=3, num_categories=2, key=jax.random.key(0)))
    """
    if gradient not in ("score", "pathwise"):
        raise ValueError(f'gradient must be "score" or "pathwise", got {gradient!r}')
    if gradient == "pathwise" and net_layout(q_net).is_categorical.all():
        raise ValueError('gradient="pathwise" needs a net with real, circular or positive positions; '
                         'a token-only net has nothing to differentiate through (use "score")')  # fmt: skip


def as_prior(prior, q_net) -> Autoregressive | None:
    """``prior`` (None, an ``Autoregressive`` or a net) as an ``Autoregressive`` matching ``q_net``'s N and K.

    >>> import jax
    >>> from arjax.nn import MeanField
    >>> as_prior(MeanField(3, 2, key=jax.random.key(0)), MeanField(3, 2, key=jax.random.key(1))).event_shape
    (3,)
    """
    if prior is None:
        return None
    if not isinstance(prior, Autoregressive):
        check_net(prior, "prior")
        prior = Autoregressive(prior)
    if prior.batch_shape != () or prior.context is not None:
        raise ValueError(
            f"prior must be an unconditional distribution (no context, batch_shape ()), got batch_shape "
            f"{prior.batch_shape}; fix the context inside a net wrapper instead"
        )
    if (prior.num_positions, prior.num_categories) != (q_net.num_positions, q_net.num_categories):
        raise ValueError(
            f"prior and q_net disagree: prior has num_positions={prior.num_positions}, num_categories="
            f"{prior.num_categories}; q_net has num_positions={q_net.num_positions}, num_categories="
            f"{q_net.num_categories}"
        )
    return prior


def _check_reward_fn(reward_fn, q_net) -> None:
    if not callable(reward_fn):
        raise TypeError(f"reward_fn must be callable as reward_fn(x: Int[N]) -> scalar, got {reward_fn!r}")
    num_positions = q_net.num_positions
    one = jax.eval_shape(reward_fn, jax.ShapeDtypeStruct((num_positions,), net_layout(q_net).value_dtype))
    if not hasattr(one, "shape") or one.shape != ():
        shape = getattr(one, "shape", type(one).__name__)
        raise ValueError(
            f"reward_fn must map one sequence x: Int[{num_positions}] to a scalar (it is vmapped over the batch), "
            f"got output shape {shape}"
        )
    if not (jnp.issubdtype(one.dtype, jnp.number) or one.dtype == jnp.bool_):
        raise TypeError(f"reward_fn must return a real number, got dtype {one.dtype}")


def _check_weight(name: str, value):
    try:
        concrete = float(value)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return eqx.error_if(value, ~(jnp.isfinite(value) & (value >= 0)), f"{name} must be finite and ≥ 0")
    if not (0 <= concrete < float("inf")):
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return value


def _check_unused(name: str, value, when: str) -> None:
    try:
        concrete = float(value)
    except (jax.errors.ConcretizationTypeError, TypeError):
        return
    if concrete != 1.0:
        raise ValueError(f"{name}={value!r} has no effect {when}")


class CountLossEstimate(NamedTuple):
    """Monte Carlo estimates from one batch of ``count_loss``.

    Attributes:
        log_count: ``ln mean(w)``, the batch's estimate of ``ln Q``.
        ess_fraction: ``(Σw)²/(B Σw²)``, the effective sample size per sample.
        completed: fraction of samples that are solutions (``w > 0``).
        divergence: the batch's self-normalised estimate of the divergence being minimised.
    """

    log_count: Float[Array, ""]
    ess_fraction: Float[Array, ""]
    completed: Float[Array, ""]
    divergence: Float[Array, ""]


def count_loss(
    net: eqx.Module,
    key: PRNGKeyArray,
    *,
    is_solution: Callable[[Int[Array, " N"]], Float[Array, ""]],
    num_samples: int,
    allowed: Allowed = None,
    divergence: str = "forward_kl",
    has_aux: bool = False,
) -> Float[Array, ""] | tuple[Float[Array, ""], CountLossEstimate]:
    r"""Fit a proposal ``q`` to ``p = uniform over the solutions`` from its own importance-weighted samples.

    With ``w = 1{x solves}/q(x)`` of ``B`` exact samples of ``q`` and ``Q = E_q[w]``:

    * ``divergence="forward_kl"``: ``KL(p ‖ q) = E_p[ln p - ln q]``, gradient
      ``-E_q[w ∇ln q]/Q ≈ -Σ_b w̄_b ∇ln q(x_b)`` with ``w̄ = w/Σw``. It is mass-covering: it
      raises ``q`` wherever solutions are, which is what keeps importance weights bounded.
    * ``divergence="chi2"``: ``χ²(p ‖ q) = E_q[w²]/Q² - 1``, whose minimum is the largest
      effective sample size ``1/(1 + χ²)`` per sample; gradient ``∝ -Σ_b w̄²_b ∇ln q(x_b)``
      with ``w̄² = w²/Σw²`` (heavier weights, noisier).

    Dead ends and non-solutions have ``w = 0`` and drop out; the reverse KL ``KL(q ‖ p)`` would
    be infinite as soon as ``q`` can reach a dead end, which is why it is not offered here. The
    value is the batch's self-normalised divergence estimate; the gradient is the weighted
    score above (weights held constant).

    Args:
        net: the proposal, either a self-contained one with ``sample_and_log_prob`` and
            ``log_prob`` (``arjax.counting.QueensProposal``) or an autoregressive net, used as
            ``arjax.Autoregressive(net, allowed=allowed)``.
        is_solution: ``x: Int[N] -> bool`` for one sequence.
        num_samples: ``B ≥ 2``.
        allowed: the ``allowed`` rule of a plain net (e.g. ``NQueens(n).allowed``).
        has_aux: also return a ``CountLossEstimate``.

    Example:
        >>> import jax
        >>> from arjax.counting import QueensProposal
        >>> from arjax.targets import NQueens
        >>> q = QueensProposal(6, exact_rows=0)
        >>> loss, aux = count_loss(q, jax.random.key(0), is_solution=NQueens(6).is_valid, num_samples=512, has_aux=True)
        >>> grads = jax.grad(count_loss)(q, jax.random.key(0), is_solution=NQueens(6).is_valid, num_samples=512)
        >>> grads.table.shape, round(float(jax.numpy.exp(aux.log_count)))
        ((6, 5, 7), 4)
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer ≥ 2, got {num_samples!r}")
    if divergence not in DIVERGENCES:
        raise ValueError(f'divergence must be "forward_kl" or "chi2", got {divergence!r}')
    proposal = as_proposal(net, allowed)
    check_proposal(proposal, is_solution, "net")
    x, log_q = jax.lax.stop_gradient(proposal.sample_and_log_prob(key, (num_samples,)))
    solved = jax.vmap(is_solution)(x) & jnp.isfinite(log_q)
    log_w = jnp.where(solved, -log_q, -jnp.inf)
    power = 1.0 if divergence == "forward_kl" else 2.0
    any_solved = jnp.any(solved)
    weights = jnp.where(solved, jax.nn.softmax(jnp.where(any_solved, power * log_w, 0.0)), 0.0)
    log_q_grad = jnp.where(solved, proposal.log_prob(jnp.where(solved[:, None], x, 0)), 0.0)
    surrogate = -jnp.sum(weights * log_q_grad)
    log_count = jax.nn.logsumexp(log_w) - jnp.log(num_samples)
    normalised = jnp.where(solved, jax.nn.softmax(jnp.where(any_solved, log_w, 0.0)), 0.0)
    ess_fraction = jnp.where(any_solved, 1.0 / jnp.sum(normalised**2), 0.0) / num_samples
    if divergence == "forward_kl":  # Σ w̄ ln(p/q) with p = 1/Q on the solutions
        value = jnp.sum(jnp.where(solved, weights * (log_w - log_count), 0.0))
    else:
        value = jnp.where(any_solved, 1.0 / ess_fraction - 1.0, jnp.inf)
    loss = surrogate - jax.lax.stop_gradient(surrogate) + jax.lax.stop_gradient(value)
    if not has_aux:
        return loss
    stats = CountLossEstimate(log_count, ess_fraction, jnp.mean(solved), value)
    return loss, jax.lax.stop_gradient(stats)


def as_proposal(net, allowed=None):
    """``net`` itself when it has ``sample_and_log_prob`` and ``log_prob``.

    Otherwise ``Autoregressive(net, allowed=allowed)``.

    >>> from arjax.counting import QueensProposal
    >>> q = QueensProposal(4)
    >>> as_proposal(q) is q
    True
    """
    if callable(getattr(net, "sample_and_log_prob", None)) and callable(getattr(net, "log_prob", None)):
        if allowed is not None:
            raise ValueError(f"allowed has no effect: {type(net).__name__} carries its own rule")
        return net
    check_net(net, "net")
    return Autoregressive(net, allowed=allowed)
