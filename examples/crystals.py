"""Generate perovskites: a grammar-masked Transformer on Perov-5, cloze MCMC, and property conditioning.

Every Perov-5 crystal (Castelli et al. 2012, as shipped in ``arjax.crystal``) is a token string
``[space group, (Wyckoff letter, element, coordinate bins…) per site, END, lattice bins…, PAD…]``
(``CrystalTokenizer``); ``CrystalGrammar`` masks every token that would break the grammar, so each
sample decodes to a crystal and ``log_prob`` stays exact and normalised. The shipped splits are
``val`` (3,787 crystals, used here for training) and ``test`` (3,785, held out).

1. **Model.** A small causal ``arjax.nn.Transformer`` fitted by ``arjax.train.fit_mle`` with the
   grammar mask. Reported: test NLL (nats per crystal), the fraction of samples that decode
   (100 % by construction), that are geometrically sound (all interatomic distances ≥ 0.5 Å, the
   CDVAE criterion) and that are novel (token string, and skeleton+elements, absent from training).
2. **Cloze.** Fill the ``?`` of a template such as ``221-a-?-b-?-c-O-X-?`` (cubic ABO₃: A at 1a,
   B at 1b, O at 3c, lattice free) with ``arjax.mcmc.cloze(mode="mh")`` restricted to those
   positions: chains at β = 1 sample the model's conditional (checked against its exact
   enumeration), and ``simulated_annealing`` (β from 1 up to 20) looks for its mode.
3. **Conditioning on a property.** An MLP ``f`` on the group/letter/element one-hots predicts a
   property (default ``heat_ref``, formation energy, eV) from the same training split (test RMSE
   reported). Target: ``p(X | y) ∝ p_model(X) N(y; f(X), σ²)``, sampled two ways:
   * MCMC: independence Metropolis–Hastings (``arjax.mcmc.independence``) with the pretrained model
     as proposal (acceptance = likelihood ratio), chains started from prior samples;
   * RL: ``arjax.train.fit_reward`` with reward ``ln N(y; f(X), σ²)``, prior = the pretrained model
     and KL weight 1, whose optimum is exactly the same posterior.
   Both are compared with the self-normalised importance-sampling reference (prior samples weighted
   by the likelihood) on the mean/median of ``f(X)`` and the fraction within ±tolerance of the
   target; the KL(q_RL ‖ p_model) after RL (exact log-probs) is compared with KL(posterior ‖ prior)
   from the same importance weights.

Run:
    python examples/crystals.py --quick          # smoke run: ~1 min of CPU time (2-core box)
    python examples/crystals.py                  # default: ~6.5 min of CPU time (13 min wall on a loaded 2-core box);
                                                 # 600 MLE steps: longer overfits (2000 steps: test NLL 17.9 vs 16.8)
    python examples/crystals.py --target 2.5 --property heat_all --out out/
"""

import argparse
import collections
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import arjax.mcmc
from arjax.crystal import CrystalTokenizer, free_coordinates, load_perov5, parse_crystal, to_structure, wyckoff_letters
from arjax.crystal.datasets import PEROV5_PROPERTIES
from arjax.distribution import Autoregressive
from arjax.mcmc.annealing import run_chains, tempered
from arjax.nn.transformer import Transformer
from arjax.train import fit_mle, fit_reward

DEFAULT_TEMPLATE = "221-a-?-b-?-c-O-X-?"


# ----------------------------------------------------------------------------------------- data
def load_data():
    """Tokenizer fitted to all of Perov-5; training = the shipped ``val`` split, test = ``test``."""
    records = load_perov5()
    tokenizer = CrystalTokenizer.for_crystals([r["crystal"] for r in records])
    train = [r for r in records if r["split"] == "val"]
    test = [r for r in records if r["split"] == "test"]
    return tokenizer, train, test


def skeleton_key(crystal) -> tuple:
    """(space group, (letter, element) per site): the crystal without coordinates and lattice."""
    return (crystal.space_group, tuple((s.letter, s.element) for s in crystal.sites))


def formula(crystal) -> str:
    return "".join(f"{e}{n if n > 1 else ''}" for e, n in crystal.composition.items())


def min_distance(crystal) -> float:
    """Smallest interatomic distance (Å) in the periodic crystal, images included."""
    s = to_structure(crystal)
    frac = np.asarray(s.frac_coords)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)
    diff = frac[:, None, None, :] - frac[None, :, None, :] + shifts[None, None, :, :]
    dist = np.linalg.norm(diff @ s.lattice, axis=-1)
    same = np.eye(len(frac), dtype=bool)[:, :, None] & np.all(shifts == 0, axis=1)[None, None, :]
    return float(np.min(np.where(same, np.inf, dist)))


def sample_quality(tokenizer, samples, train_tokens: set, train_skeletons: set) -> dict:
    """Fractions of samples that decode, are geometrically sound, and are novel."""
    decoded, sound, novel_tokens, novel_skeletons = 0, 0, 0, 0
    for x in np.asarray(samples):
        try:
            crystal = tokenizer.decode(x)
        except ValueError:
            continue
        decoded += 1
        sound += min_distance(crystal) >= 0.5
        novel_tokens += tuple(x.tolist()) not in train_tokens
        novel_skeletons += skeleton_key(crystal) not in train_skeletons
    n = len(samples)
    return dict(valid=decoded / n, sound=sound / n, novel=novel_tokens / n, novel_skeleton=novel_skeletons / n)


# ------------------------------------------------------------------------------------ predictor
def structure_features(tokenizer):
    """``x ↦`` one-hot of every position's group/letter/element token (coordinates and lattice ignored)."""
    lo, hi = tokenizer.group_start, tokenizer.coordinate_start

    def features(x):
        inside = (x >= lo) & (x < hi)
        return jax.nn.one_hot(jnp.where(inside, x - lo, -1), hi - lo).reshape(-1)

    return features


class Predictor(eqx.Module):
    """``f(x) = mean + scale · MLP(one-hots(x))``: a property predicted from one token sequence."""

    mlp: eqx.nn.MLP
    mean: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    features: object = eqx.field(static=True)

    def __call__(self, x):
        return self.mean + self.scale * self.mlp(self.features(x))[0]


@eqx.filter_jit
def predict(predictor, xs):
    """``f`` of every sequence of ``xs``; the weights are an argument, not constants compiled into the program."""
    return jax.vmap(predictor)(xs)


def fit_predictor(features, train_x, train_y, test_x, test_y, *, steps: int, key) -> tuple[Predictor, dict]:
    """An MLP (2 × 128, GELU) on ``features(x)``, AdamW on standardised targets in minibatches of ≤ 256 rows.

    Returns the predictor and its test/train RMSE beside that of predicting the mean.
    """
    k_init, k_batch = jax.random.split(key)
    mean, scale = float(np.mean(train_y)), float(np.std(train_y))
    in_size = int(features(jnp.asarray(train_x[0])).shape[0])
    mlp = eqx.nn.MLP(in_size, 1, width_size=128, depth=2, activation=jax.nn.gelu, key=k_init)
    model = Predictor(mlp, mean, scale, features)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    schedule = optax.cosine_decay_schedule(3e-3, steps)
    optimizer = optax.adamw(schedule, weight_decay=1e-2)
    opt_state = optimizer.init(params)
    x_all, y_all = jnp.asarray(train_x), jnp.asarray(train_y, jnp.float32)
    batch = min(256, x_all.shape[0])

    def loss(params, x, y):
        f = jax.vmap(eqx.combine(params, static))(x)
        return jnp.mean(((f - y) / scale) ** 2)

    @jax.jit
    def train(params, opt_state):
        def step(carry, t):
            params, opt_state = carry
            rows = jax.random.choice(jax.random.fold_in(k_batch, t), x_all.shape[0], (batch,), replace=False)
            grads = jax.grad(loss)(params, x_all[rows], y_all[rows])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), jnp.arange(steps))[0]

    params, _ = train(params, opt_state)
    model = eqx.combine(params, static)

    def rmse(x, y):
        return float(np.sqrt(np.mean((np.asarray(predict(model, jnp.asarray(x))) - y) ** 2)))

    return model, dict(test_rmse=rmse(test_x, test_y), train_rmse=rmse(train_x, train_y),
                       baseline_rmse=float(np.sqrt(np.mean((test_y - mean) ** 2))))


# ------------------------------------------------------------------------------------ log-probs
@eqx.filter_jit
def _score_chunk(net, rule, x):
    c = Autoregressive(net, allowed=rule).conditional_log_probs(x)
    return jnp.take_along_axis(c, x[..., None], axis=-1)[..., 0], jnp.max(c, axis=-1)


def make_scorer(net, rule, chunk_size: int = 512):
    """``xs ↦ (ln p(x_i | x_<i), max_k ln p(k | x_<i))``, both ``[M, N]``, in fixed-size chunks (one compile).

    Summing the first over positions gives the exact ``ln p(x)``; summing a prefix gives the exact
    probability of the prefix (the later positions marginalised).
    """

    def score(xs):
        xs = np.asarray(xs, np.int32)
        pad = -len(xs) % chunk_size
        padded = np.concatenate([xs, np.repeat(xs[:1], pad, axis=0)]) if pad else xs
        parts = [_score_chunk(net, rule, jnp.asarray(padded[i : i + chunk_size]))
                 for i in range(0, len(padded), chunk_size)]
        picked, best = (np.concatenate([np.asarray(p[j]) for p in parts])[: len(xs)] for j in (0, 1))
        return picked.astype(np.float64), best.astype(np.float64)

    return score


# ---------------------------------------------------------------------------------------- cloze
def parse_template(tokenizer, template: str):
    """Tokens of a template whose ``?`` stand for elements, coordinates or lattice parameters.

    Sites must be listed in Wyckoff-letter order (as ``encode`` sorts them), so that string token
    ``k`` is sequence position ``k``. Returns ``(tokens, holes, kinds)``: the template with every
    ``?`` filled by a placeholder, the positions of the ``?`` and the kind of every position.
    """
    parts = [p.strip() for p in template.split("-")]
    try:
        g = int(parts[0])
        letters, free = wyckoff_letters(g), free_coordinates(g)
        kinds, i = ["group"], 1
        while parts[i] != "X":
            f = len(free[letters.index(parts[i])])
            kinds += ["letter", "element"] + ["coordinate"] * f
            i += 2 + f
    except (ValueError, IndexError):
        raise ValueError(f"template {template!r}: give the space group, letters and 'X' explicitly; "
                         "'?' may stand only for elements, coordinates and lattice parameters") from None
    kinds += ["end"] + ["lattice"] * (len(parts) - i - 1)
    filler = {"element": "O", "coordinate": "0", "lattice": f"{np.mean(tokenizer.length_range):.4f}"}
    holes = [k for k, p in enumerate(parts) if p == "?"]
    bad = [k for k in holes if kinds[k] not in filler]
    if bad:
        raise ValueError(f"template {template!r}: '?' at token(s) {bad} is not an element, coordinate or lattice value")
    tokens = tokenizer.encode("-".join(filler[kinds[k]] if p == "?" else p for k, p in enumerate(parts)))
    if tokenizer.to_string(tokens).split("-")[: i + 1] != [
        filler[kinds[k]] if p == "?" else p for k, p in enumerate(parts[: i + 1])
    ]:
        raise ValueError(f"template {template!r}: list the sites in Wyckoff-letter order")
    return tokens, np.array(holes, np.int32), kinds


def exact_cloze(scorer, x0, holes, kinds, tokenizer, limit: int = 20_000):
    """Exact conditional of the element holes (lattice holes after them summed out), or None.

    Possible when every hole that is not an element lies after the last fixed token: then
    ``p(elements | template) ∝ Π_{i < first such hole} p(x_i | x_<i)``. Also returns, per element
    assignment, ``ln p`` of the prefix plus the most likely value of the first trailing hole (to
    name the mode of the joint when that hole is the only other one).
    """
    element_holes = [int(k) for k in holes if kinds[k] == "element"]
    others = [int(k) for k in holes if kinds[k] != "element"]
    fixed_after = [k for k in range(len(kinds)) if kinds[k] != "lattice" and k not in holes]
    if not element_holes or (others and min(others) < max(fixed_after)):
        return None
    num_elements = len(tokenizer.elements)
    if num_elements ** len(element_holes) > limit:
        return None
    combos = np.array(np.meshgrid(*[np.arange(num_elements)] * len(element_holes), indexing="ij"))
    combos = combos.reshape(len(element_holes), -1).T + tokenizer.element_start
    xs = np.repeat(np.asarray(x0)[None], len(combos), axis=0)
    xs[:, element_holes] = combos
    stop = min(others) if others else len(kinds)
    picked, best = scorer(xs)
    log_p = picked[:, :stop].sum(axis=1)
    joint = log_p + (best[:, stop] if len(others) == 1 else 0.0)
    return dict(combos=combos, log_p=log_p - np.logaddexp.reduce(log_p), joint=joint)


def cloze_chains(prior, holes, num_steps: int):
    """``run(keys, x_init, betas)``: per chain, one MH cloze sweep over ``holes`` of ``π^β`` per step.

    The same compiled function serves sampling (all ``β = 1``) and simulated annealing (``β`` rising);
    it is ``arjax.mcmc.simulated_annealing`` that also records the acceptance rate.
    """

    def chain(key, x, betas):
        def one_step(position, inputs):
            step_key, beta = inputs
            algorithm = arjax.mcmc.cloze(tempered(prior.log_prob, beta), prior, positions=holes, mode="mh")
            state, info = algorithm.step(step_key, algorithm.init(position))
            return state.position, (state.position, state.logdensity / beta, info.acceptance_rate)

        return jax.lax.scan(one_step, x, (jax.random.split(key, num_steps), betas))[1]

    return jax.jit(jax.vmap(chain, in_axes=(0, 0, None)))


def cloze_demo(args, tokenizer, prior, scorer, key) -> dict:
    """MH cloze chains at β = 1 (acceptance, frequencies vs exact) and simulated annealing (mode)."""
    x0, holes, kinds = parse_template(tokenizer, args.template)
    element_holes = [int(k) for k in holes if kinds[k] == "element"]
    key_init, key_run, key_anneal = jax.random.split(key, 3)
    # Start every chain from a random element assignment: the cloze kernel must find the mass itself.
    init = np.repeat(np.asarray(x0)[None], args.chains, axis=0)
    init[:, element_holes] = np.asarray(jax.random.randint(
        key_init, (args.chains, len(element_holes)), tokenizer.element_start, tokenizer.coordinate_start))
    init = jnp.asarray(init)
    run = cloze_chains(prior, holes, args.cloze_steps)
    start = time.perf_counter()
    positions, _, acceptance = run(jax.random.split(key_run, args.chains), init, jnp.ones(args.cloze_steps))
    positions = np.asarray(positions)
    burn = args.cloze_steps // 2
    kept = positions[:, burn:, :][..., element_holes].reshape(-1, len(element_holes))
    counts = collections.Counter(map(tuple, kept.tolist()))

    def name(combo) -> str:
        x = np.asarray(x0).copy()
        x[element_holes] = combo
        return formula(tokenizer.decode(x))

    exact = exact_cloze(scorer, x0, holes, kinds, tokenizer)
    result = dict(template=args.template, acceptance=float(np.mean(acceptance)), positions=holes.tolist(),
                  time_sampling=time.perf_counter() - start)
    if exact is not None:
        index = {tuple(c): j for j, c in enumerate(exact["combos"].tolist())}
        empirical = np.zeros(len(exact["combos"]))
        for combo, n in counts.items():
            empirical[index[combo]] += n
        empirical /= empirical.sum()
        probs = np.exp(exact["log_p"])
        order = np.argsort(-probs)
        result.update(tv=0.5 * float(np.abs(empirical - probs).sum()),
                      top=[(name(exact["combos"][j]), float(empirical[j]), float(probs[j])) for j in order[:8]],
                      exact_mode=name(exact["combos"][int(np.argmax(exact["joint"]))]))
    else:
        total = sum(counts.values())
        result["top"] = [(name(c), n / total, float("nan")) for c, n in counts.most_common(8)]

    start = time.perf_counter()
    betas = jnp.geomspace(1.0, args.anneal_beta, args.cloze_steps)
    positions, log_p, acceptance = map(np.asarray, run(jax.random.split(key_anneal, args.chains), init, betas))
    best = positions[np.arange(args.chains), np.argmax(log_p, axis=1)]
    best_lp = np.max(log_p, axis=1)
    found = collections.Counter(tokenizer.to_string(x) for x in best)
    strings = {tokenizer.to_string(x): float(lp) for x, lp in zip(best, best_lp)}
    result.update(annealed=[(s, n / len(best), strings[s]) for s, n in found.most_common(5)],
                  annealed_formulas=collections.Counter(formula(tokenizer.decode(x)) for x in best).most_common(5),
                  anneal_acceptance=(float(acceptance[:, : args.cloze_steps // 10].mean()),
                                     float(acceptance[:, -(args.cloze_steps // 10) :].mean())),
                  time_annealing=time.perf_counter() - start)
    return result


# --------------------------------------------------------------------------------- conditioning
def property_stats(values, target: float, tolerance: float, weights=None) -> dict:
    values = np.asarray(values, np.float64)
    w = np.full(len(values), 1.0 / len(values)) if weights is None else np.asarray(weights) / np.sum(weights)
    order = np.argsort(values)
    median = values[order][np.searchsorted(np.cumsum(w[order]), 0.5)]
    return dict(mean=float(np.sum(w * values)), median=float(median),
                within=float(np.sum(w * (np.abs(values - target) <= tolerance))))


def condition(args, tokenizer, net, prior, scorer, predictor, key) -> dict:
    """Sample p(X | y = target) ∝ p(X) N(target; f(X), σ²) by independence MH and by RL fine-tuning."""
    target, sigma = args.target, args.sigma
    rule = tokenizer.allowed

    def log_likelihood(x):
        return -0.5 * ((predictor(x) - target) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))

    def log_posterior(x):
        return prior.log_prob(x) + log_likelihood(x)

    key_prior, key_mcmc, key_rl, key_q = jax.random.split(key, 4)
    x_prior = prior.sample(key_prior, (args.samples,))
    f_prior = np.asarray(predict(predictor, x_prior), np.float64)
    # Self-normalised importance sampling of the posterior with the prior as proposal: the reference.
    log_w = -0.5 * ((f_prior - target) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
    w = np.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    log_z = float(log_w.max() + np.log(w.mean()))
    kl_reference = float(np.sum(w * log_w) / w.sum() - log_z)  # KL(posterior ‖ prior) = E_post[ln L] - ln Z
    out = dict(prior=property_stats(f_prior, target, args.tolerance),
               reference=property_stats(f_prior, target, args.tolerance, weights=w),
               ess=ess, log_z=log_z, kl_reference=kl_reference, f_prior=f_prior, w_reference=w)

    # MCMC: independence Metropolis–Hastings with the model as proposal, one chain per prior sample.
    start = time.perf_counter()
    algorithm = arjax.mcmc.independence(log_posterior, prior)
    positions, infos = jax.jit(lambda k, x: run_chains(k, algorithm, x, args.mcmc_steps))(
        key_mcmc, x_prior[: args.chains])
    x_mcmc = np.asarray(positions[:, -1])
    f_mcmc = np.asarray(predict(predictor, jnp.asarray(x_mcmc)), np.float64)
    accepted = np.asarray(infos.is_accepted)
    out.update(mcmc=property_stats(f_mcmc, target, args.tolerance), f_mcmc=f_mcmc, x_mcmc=x_mcmc,
               mcmc_acceptance=float(accepted.mean()), mcmc_moved=float(accepted.any(axis=1).mean()),
               time_mcmc=time.perf_counter() - start)

    # RL: KL-regularised reward fine-tuning; with kl_weight = 1 its optimum is the same posterior.
    start = time.perf_counter()
    rl_net, history = fit_reward(
        net, log_likelihood, prior=prior, kl_weight=1.0, optimizer=optax.adam(args.rl_lr),
        num_steps=args.rl_steps, batch_size=args.rl_batch, key=key_rl, clip_grad=1.0,
        log_every=chunk(args.rl_steps, 50), progress=args.progress)
    q = Autoregressive(rl_net, allowed=rule)
    x_rl, log_q = q.sample_and_log_prob(key_q, (args.samples,))
    log_p = scorer(x_rl)[0].sum(axis=1)
    f_rl = np.asarray(predict(predictor, x_rl), np.float64)
    delta = np.asarray(log_q, np.float64) - log_p
    reward = -0.5 * ((f_rl - target) / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
    out.update(rl=property_stats(f_rl, target, args.tolerance), f_rl=f_rl, x_rl=np.asarray(x_rl),
               kl_rl=float(delta.mean()), kl_rl_err=float(delta.std() / np.sqrt(len(delta))),
               elbo=float(np.mean(reward - delta)), history=history, time_rl=time.perf_counter() - start)
    return out


# ----------------------------------------------------------------------------------------- plot
def plot(path: Path, args, cond: dict, cloze: dict, prop_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
    ax = axes[0]
    all_f = np.concatenate([cond["f_prior"], cond["f_mcmc"], cond["f_rl"]])
    bins = np.linspace(np.quantile(all_f, 0.002) - 0.1, np.quantile(all_f, 0.998) + 0.1, 60)
    ax.hist(cond["f_prior"], bins, density=True, alpha=0.35, color="grey", label="prior samples (pretrained model)")
    ax.hist(cond["f_prior"], bins, weights=cond["w_reference"], density=True, histtype="step", lw=2, color="k",
            label="posterior, importance-weighted prior")
    ax.hist(cond["f_mcmc"], bins, density=True, histtype="step", lw=1.6, color="C0",
            label=f"MCMC (independence MH, {args.mcmc_steps} steps)")
    ax.hist(cond["f_rl"], bins, density=True, histtype="step", lw=1.6, color="C3",
            label=f"RL fine-tuned ({args.rl_steps} steps)")
    ax.axvspan(args.target - args.tolerance, args.target + args.tolerance, color="C2", alpha=0.12,
               label=f"target {args.target:g} ± {args.tolerance:g}")
    ax.set_xlabel(f"predicted {prop_label}")
    ax.set_ylabel("density")
    ax.set_title(f"p(X | y={args.target:g}) ∝ p(X) N(y; f(X), {args.sigma:g}²)")
    ax.legend(fontsize=7)

    ax = axes[1]
    h = cond["history"]
    ax.plot(h["step"], h["reward"], color="C3", label="E_q[ln N(y; f(X), σ²)]")
    ax.axhline(np.sum(cond["w_reference"] * (-0.5 * ((cond["f_prior"] - args.target) / args.sigma) ** 2
                                             - math.log(args.sigma * math.sqrt(2 * math.pi))))
               / np.sum(cond["w_reference"]), color="C3", ls=":", label="posterior (IS reference)")
    ax.set_xlabel("RL step")
    ax.set_ylabel("reward")
    ax2 = ax.twinx()
    ax2.plot(h["step"], h["kl"], color="C0", label="KL(q ‖ prior)")
    ax2.axhline(cond["kl_reference"], color="C0", ls=":", label="KL(posterior ‖ prior), IS")
    ax2.set_ylabel("KL (nats)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower right")
    ax.set_title("RL fine-tuning (kl_weight 1)")

    ax = axes[2]
    top = cloze["top"]
    names = [t[0] for t in top]
    ks = np.arange(len(top))
    ax.bar(ks - 0.2, [t[2] for t in top], 0.4, label="exact model conditional", color="k", alpha=0.6)
    ax.bar(ks + 0.2, [t[1] for t in top], 0.4, label=f"cloze MH chains (acc. {cloze['acceptance']:.2f})", color="C1")
    ax.set_xticks(ks, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("probability")
    ax.set_title(f"cloze {args.template}", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main
def chunk(steps: int, target: int) -> int:
    """The largest divisor of ``steps`` not above ``target`` (equal chunks compile once)."""
    return max(d for d in range(1, min(steps, target) + 1) if steps % d == 0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (compile-bound): tiny model, few steps and chains (overrides the sizes below)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the PNG (default out/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600, help="MLE training steps (batch --batch-size)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate of MLE training")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--property", choices=PEROV5_PROPERTIES, default="heat_ref",
                        help="property to condition on (default heat_ref, formation energy in eV)")
    parser.add_argument("--target", type=float, default=0.3, help="target value y of the property")
    parser.add_argument("--sigma", type=float, default=0.1, help="σ of the likelihood N(y; f(X), σ²)")
    parser.add_argument("--tolerance", type=float, default=0.2, help="report the fraction with |f(X) - y| ≤ this")
    parser.add_argument("--predictor-steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=2000, help="samples for validity/novelty and property stats")
    parser.add_argument("--chains", type=int, default=128, help="MCMC chains (cloze and property)")
    parser.add_argument("--mcmc-steps", type=int, default=200, help="independence-MH steps per chain")
    parser.add_argument("--rl-steps", type=int, default=200)
    parser.add_argument("--rl-batch", type=int, default=128)
    parser.add_argument("--rl-lr", type=float, default=3e-4)
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help=f"cloze template, '?' for elements/coordinates/lattice (default {DEFAULT_TEMPLATE!r})")
    parser.add_argument("--cloze-steps", type=int, default=100, help="cloze sweeps per chain (and annealing steps)")
    parser.add_argument("--anneal-beta", type=float, default=20.0, help="final inverse temperature of annealing")
    parser.add_argument("--progress", action="store_true", help="show progress bars while training")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.d_model, args.layers = 100, 64, 32, 1
        args.predictor_steps, args.samples, args.chains = 200, 256, 32
        args.mcmc_steps, args.rl_steps, args.rl_batch, args.cloze_steps = 30, 20, 32, 20
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    key = jax.random.key(args.seed)
    k_net, k_fit, k_sample, k_pred, k_cloze, k_cond = jax.random.split(key, 6)
    tokenizer, train, test = load_data()
    rule = tokenizer.allowed
    train_x = tokenizer.encode_batch([r["crystal"] for r in train])
    test_x = tokenizer.encode_batch([r["crystal"] for r in test])
    print(f"Perov-5: {len(train)} training (val split) and {len(test)} test crystals; {tokenizer}")

    # 1. Maximum likelihood with the grammar mask.
    t0 = time.perf_counter()
    net = Transformer(tokenizer.num_positions, tokenizer.num_categories, d_model=args.d_model, num_heads=4,
                      num_layers=args.layers, key=k_net)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(100, args.steps // 10), args.steps, args.lr / 20)
    net, history = fit_mle(net, train_x, optimizer=optax.adam(schedule), batch_size=args.batch_size, key=k_fit,
                           num_steps=args.steps, allowed=rule, clip_grad=1.0, log_every=chunk(args.steps, 500),
                           progress=args.progress)
    prior = Autoregressive(net, allowed=rule)
    scorer = make_scorer(net, rule)
    test_nll = -float(scorer(test_x)[0].sum(axis=1).mean())
    train_nll = -float(scorer(train_x)[0].sum(axis=1).mean())
    samples = prior.sample(k_sample, (args.samples,))
    train_tokens = {tuple(x) for x in train_x.tolist()}
    train_skeletons = {skeleton_key(parse_crystal(r["crystal"])) for r in train}
    quality = sample_quality(tokenizer, samples, train_tokens, train_skeletons)
    time_model = time.perf_counter() - t0
    print(f"\n[model] Transformer d={args.d_model} layers={args.layers}, {args.steps} steps × batch {args.batch_size}")
    print(f"  test NLL  = {test_nll:.3f} nats/crystal   (train {train_nll:.3f}; "
          f"{test_nll / tokenizer.num_positions:.4f} nats/token)")
    print(f"  samples   = {args.samples}: valid (decode) = {100 * quality['valid']:.1f}%, "
          f"sound (min distance ≥ 0.5 Å) = {100 * quality['sound']:.1f}%")
    print(f"  novelty   = {100 * quality['novel']:.1f}% (token string not in training), "
          f"{100 * quality['novel_skeleton']:.1f}% (group+letters+elements not in training)")
    print(f"  time      = {time_model:.1f}s")

    # 2. Cloze: fill the template's '?' by MCMC restricted to those positions.
    cloze = cloze_demo(args, tokenizer, prior, scorer, k_cloze)
    print(f"\n[cloze] template {args.template}: positions {cloze['positions']}, {args.chains} chains × "
          f"{args.cloze_steps} MH sweeps (model-conditional proposals)")
    print(f"  acceptance rate = {cloze['acceptance']:.3f}" + (
        f"   TV(chains, exact conditional) = {cloze['tv']:.3f}" if "tv" in cloze else ""))
    print("  top compositions:  MCMC freq   exact")
    for name, freq, prob in cloze["top"][:5]:
        print(f"    {name:<14}{freq:>10.3f}{prob:>9.3f}")
    a0, a1 = cloze["anneal_acceptance"]
    print(f"  annealing β 1 → {args.anneal_beta:g} (acceptance {a0:.3f} in the first tenth, {a1:.3f} in the last): "
          "best strings (fraction of chains, ln p):")
    for s, frac, lp in cloze["annealed"][:3]:
        print(f"    {s:<34}{frac:>6.2f}{lp:>9.2f}")
    if "exact_mode" in cloze:
        print(f"  exact mode of the joint: {cloze['exact_mode']}; annealed formulas: "
              + ", ".join(f"{f} ({n})" for f, n in cloze["annealed_formulas"][:3]))
    print(f"  time = {cloze['time_sampling'] + cloze['time_annealing']:.1f}s")

    # 3. Property predictor.
    t0 = time.perf_counter()
    train_y = np.array([r[args.property] for r in train])
    test_y = np.array([r[args.property] for r in test])
    predictor, fit = fit_predictor(structure_features(tokenizer), train_x, train_y, test_x, test_y,
                                   steps=args.predictor_steps, key=k_pred)  # fmt: skip
    print(f"\n[predictor] MLP on group/letter/element one-hots → {args.property}: test RMSE = "
          f"{fit['test_rmse']:.3f} (train {fit['train_rmse']:.3f}; predicting the mean: {fit['baseline_rmse']:.3f})"
          f"   time = {time.perf_counter() - t0:.1f}s")

    # 4. Conditioning on the property: MCMC vs RL.
    cond = condition(args, tokenizer, net, prior, scorer, predictor, k_cond)
    print(f"\n[conditioning] p(X | {args.property} = {args.target:g}) ∝ p(X) N({args.target:g}; f(X), "
          f"{args.sigma:g}²), tolerance ±{args.tolerance:g}")
    print(f"  {'':<34}{'mean f':>8}{'median f':>10}{'within':>9}")
    rows = [("prior samples", cond["prior"]), ("posterior reference (IS)", cond["reference"]),
            (f"MCMC ({args.chains} chains × {args.mcmc_steps})", cond["mcmc"]),
            (f"RL ({args.rl_steps} steps × {args.rl_batch})", cond["rl"])]
    for name, st in rows:
        print(f"  {name:<34}{st['mean']:>8.3f}{st['median']:>10.3f}{100 * st['within']:>8.1f}%")
    print(f"  IS reference: ESS = {cond['ess']:.0f} of {args.samples}, ln Z = {cond['log_z']:.3f}, "
          f"KL(posterior ‖ prior) = {cond['kl_reference']:.3f} nats")
    print(f"  MCMC: acceptance rate = {cond['mcmc_acceptance']:.3f}, chains that moved = "
          f"{100 * cond['mcmc_moved']:.1f}%   time = {cond['time_mcmc']:.1f}s")
    print(f"  RL: KL(q ‖ prior) = {cond['kl_rl']:.3f} ± {cond['kl_rl_err']:.3f} nats (exact log-probs), "
          f"E_q[r] - KL = {cond['elbo']:.3f} ≤ ln Z   time = {cond['time_rl']:.1f}s")
    for name, xs in (("MCMC", cond["x_mcmc"]), ("RL", cond["x_rl"])):
        q = sample_quality(tokenizer, xs, train_tokens, train_skeletons)
        print(f"  {name} samples: valid = {100 * q['valid']:.1f}%, novel = {100 * q['novel']:.1f}%")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"crystals_{args.property}.png"
    plot(path, args, cond, cloze, args.property)
    print(f"\nplot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
