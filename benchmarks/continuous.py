"""Real-valued sequences: density estimation against NumPyro's own autoregressive flows, and KV-cache sampling.

Section ``density``: on each dataset of ``examples/continuous.py`` (``moons``, 2-D; ``spiral10``,
10-D), the same train/test split, the same number of steps × batch and a comparable parameter
count, it fits by maximum likelihood (Adam, cosine decay)

* arjax: a MADE and a Transformer with ``GaussianMixture`` positions (``arjax.train.fit_mle``);
* NumPyro: a masked autoregressive flow (``InverseAutoregressiveTransform`` layers used in the
  density direction, with ``PermuteTransform`` between them, on a ``Normal`` base) and a block
  neural autoregressive flow (``BlockNeuralAutoregressiveTransform``), their widths chosen to
  match the MADE's parameter count, trained by the same Optax loop written here (``lax.scan``
  over random minibatches),

and prints one JSON line per model with the exact test NLL (nats per point), the parameter count
and the training seconds. Lower NLL is better; the flows' NLL is exact too.

Section ``cache``: sampling a 256-position ``Transformer`` with ``GaussianMixture(4)`` positions
with the KV cache against the naive recompute of the whole net at every position (same samples).

Section ``pathwise``: compile and step time of the jitted pathwise reward gradient
(``reward_loss(..., gradient="pathwise")``) of a MADE over ``VonMisesMixture`` positions, against the
same family with the CDF's derivatives taken through its loops (the series recurrence and Clenshaw
scans) instead of ``von_mises_cdf``'s closed-form JVP; the two gradients agree to rounding.

Run:
    python benchmarks/continuous.py                      # every section
    python benchmarks/continuous.py --sections cache --quick
"""

import argparse
import dataclasses
import importlib.util
import sys
import time
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.example_libraries import stax
from numpyro.distributions.flows import BlockNeuralAutoregressiveTransform, InverseAutoregressiveTransform
from numpyro.distributions.transforms import PermuteTransform
from numpyro.nn import AutoregressiveNN, BlockNeuralAutoregressiveNN

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import chosen_sections, emit, emit_environment, timed  # noqa: E402

from arjax.families import GaussianMixture, VonMisesMixture, von_mises  # noqa: E402
from arjax.nn import MADE, Transformer  # noqa: E402
from arjax.objectives import reward_loss  # noqa: E402
from arjax.sampling import sample_and_log_prob  # noqa: E402
from arjax.train import evaluate_nll, fit_mle  # noqa: E402

SECTIONS = ("density", "cache", "pathwise")
MODELS = ("arjax_made_gmm", "arjax_transformer_gmm", "numpyro_maf", "numpyro_bnaf")


def _example_datasets() -> dict:
    """The datasets of ``examples/continuous.py`` (loaded by path: the example is not a package)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "continuous.py"
    spec = importlib.util.spec_from_file_location("continuous_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DATASETS


DATASETS = _example_datasets()


def _count(tree) -> int:
    return sum(np.size(leaf) for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


def masked_autoregressive_flow(dimensions: int, layers: int, hidden: int):
    """``(init, log_prob)`` of NumPyro IAF layers in the density direction: ``ln p(x) = ln N(T(x)) + ln|T'(x)|``."""
    makers = [AutoregressiveNN(dimensions, [hidden, hidden], permutation=jnp.arange(dimensions),
                               nonlinearity=stax.Elu) for _ in range(layers)]  # fmt: skip

    def init(key):
        return [maker[0](k, (dimensions,))[1] for maker, k in zip(makers, jax.random.split(key, layers))]

    def log_prob(params, x):
        log_det = 0.0
        for i, (maker, p) in enumerate(zip(makers, params)):
            if i:
                x = PermuteTransform(jnp.arange(dimensions)[::-1])(x)
            transform = InverseAutoregressiveTransform(partial(maker[1], p))
            y = transform(x)
            log_det = log_det + transform.log_abs_det_jacobian(x, y)
            x = y
        return dist.Normal(0.0, 1.0).log_prob(x).sum(-1) + log_det

    return init, log_prob


def block_neural_flow(dimensions: int, hidden_factors: list[int]):
    """``(init, log_prob)`` of a NumPyro BNAF in the density direction."""
    init_fn, apply_fn = BlockNeuralAutoregressiveNN(dimensions, hidden_factors)

    def init(key):
        return init_fn(key, (dimensions,))[1]

    def log_prob(params, x):
        transform = BlockNeuralAutoregressiveTransform(partial(apply_fn, params))
        y = transform(x)
        return dist.Normal(0.0, 1.0).log_prob(y).sum(-1) + transform.log_abs_det_jacobian(x, y)

    return init, log_prob


def _closest(parameters: int, make, widths=(8, 16, 32, 64, 128, 256)):
    """The flow whose parameter count is closest to ``parameters`` among hidden ``widths``."""
    flows = [make(w) for w in widths]
    counts = [_count(init(jax.random.key(0))) for init, _ in flows]
    return flows[int(np.argmin(np.abs(np.log(np.asarray(counts) / parameters))))]


def fit_flow(log_prob, params, train, *, steps, batch_size, lr, key):
    """Adam on ``-mean log_prob`` over shuffled minibatches, as ``fit_mle`` does for the arjax nets."""
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05))
    state = optimizer.init(params)
    train = jnp.asarray(train)

    @jax.jit
    def run(params, state):
        def step(carry, t):
            params, state = carry
            rows = jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, train.shape[0])
            def nll(p):
                return -jnp.mean(jax.vmap(lambda x: log_prob(p, x))(train[rows]))

            loss, grads = jax.value_and_grad(nll)(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(step, (params, state), jnp.arange(steps))[0][0]

    return run(params, state)


def density_section(args):
    for name in args.datasets:
        data = DATASETS[name](jax.random.key(args.seed), args.points)
        split = int(0.8 * len(data))
        train, test = data[:split], data[split:]
        d = data.shape[1]
        models = {
            "arjax_made_gmm": MADE(d, families=GaussianMixture(args.components), width=args.width, depth=2,
                                   key=jax.random.key(1)),  # fmt: skip
            "arjax_transformer_gmm": Transformer(d, families=GaussianMixture(args.components), d_model=args.d_model,
                                                 num_heads=4, num_layers=2, key=jax.random.key(1)),  # fmt: skip
        }
        target = _count(models["arjax_made_gmm"])
        for label, net in models.items():
            if label not in args.models:
                continue
            start = time.perf_counter()
            net, _ = fit_mle(net, train, optimizer=optax.adam(optax.cosine_decay_schedule(args.lr, args.steps, 0.05)),
                             num_steps=args.steps, batch_size=args.batch_size, key=jax.random.key(2), progress=False,
                             log_every=args.steps)  # fmt: skip
            seconds = time.perf_counter() - start
            emit(f"{name}_{label}_test_nll", evaluate_nll(net, test), "nats/point", parameters=_count(net),
                 train_seconds=seconds, steps=args.steps, batch=args.batch_size)  # fmt: skip
        flows = {
            "numpyro_maf": _closest(target, lambda h: masked_autoregressive_flow(d, args.flow_layers, h),
                                    widths=[w for w in (8, 16, 32, 64, 128, 256) if w >= d]),  # NumPyro: hidden ≥ d
            "numpyro_bnaf": _closest(target, lambda f: block_neural_flow(d, [f, f])),
        }
        for label, (init, log_prob) in flows.items():
            if label not in args.models:
                continue
            params = init(jax.random.key(1))
            start = time.perf_counter()
            params = jax.block_until_ready(fit_flow(log_prob, params, train, steps=args.steps,
                                                    batch_size=args.batch_size, lr=args.lr, key=jax.random.key(2)))
            seconds = time.perf_counter() - start
            nll = -float(jnp.mean(jax.jit(jax.vmap(lambda x: log_prob(params, x)))(jnp.asarray(test))))
            emit(f"{name}_{label}_test_nll", nll, "nats/point", parameters=_count(params), train_seconds=seconds,
                 steps=args.steps, batch=args.batch_size)  # fmt: skip


def cache_section(args):
    n = 256
    net = Transformer(n, families=GaussianMixture(4), d_model=args.cache_d_model, num_heads=4, num_layers=2,
                      key=jax.random.key(0))  # fmt: skip
    batch = args.cache_batch
    runs = {}
    for cached in (True, False):
        fn = jax.jit(lambda net, key, cached=cached: sample_and_log_prob(net, key, (batch,), cached=cached))
        compile_s, best = timed(fn, net, jax.random.key(1), repeats=args.repeats)
        runs[cached] = (best, fn(net, jax.random.key(1)))
        label = "kv_cache" if cached else "full_recompute"
        emit(f"gmm_transformer_sampling_{label}", batch / best, "samples/s", positions=n, batch=batch,
             seconds=best, compile_seconds=compile_s)  # fmt: skip
    agree = float(jnp.max(jnp.abs(runs[True][1][0] - runs[False][1][0])))
    emit("gmm_transformer_kv_cache_speedup", runs[False][0] / runs[True][0], "x", baseline="full_recompute",
         max_value_difference=agree)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _LoopDifferentiatedVonMises(VonMisesMixture):
    """``VonMisesMixture`` whose CDF is differentiated through its loops (the baseline of ``pathwise``)."""

    def cdf(self, params, value):
        log_w, loc, kappa = self.unpack(params)
        unwrapped = von_mises._unwrapped_cdf.fun
        upper = unwrapped(*jnp.broadcast_arrays(2 * jnp.pi * (value - loc), kappa))
        lower = unwrapped(*jnp.broadcast_arrays(-2 * jnp.pi * loc, kappa))
        return jnp.sum(jnp.exp(log_w) * (upper - lower))


def _circular_reward(x):
    return jnp.sum(jnp.cos(2 * jnp.pi * (x - 0.3)))


def pathwise_section(args):
    n, batch = args.pathwise_positions, args.pathwise_batch
    runs = {}
    families = {"closed_form_jvp": VonMisesMixture(4), "loops_differentiated": _LoopDifferentiatedVonMises(4)}
    for label, family in families.items():
        net = MADE(num_positions=n, families=family, width=args.width, key=jax.random.key(0))

        def loss(net, key):
            return reward_loss(net, key, reward_fn=_circular_reward, num_samples=batch, gradient="pathwise")

        fn = eqx.filter_jit(eqx.filter_value_and_grad(loss))
        start = time.perf_counter()
        grad = jax.block_until_ready(fn(net, jax.random.key(1))[1])
        first = time.perf_counter() - start
        _, best = timed(fn, net, jax.random.key(1), repeats=args.repeats, warmup=False)
        runs[label] = (first - best, grad, best)
        emit(f"von_mises_pathwise_grad_compile_{label}", first - best, "s", positions=n, batch=batch,
             step_seconds=best)  # fmt: skip
    leaves = [jnp.max(jnp.abs(a - b)) for a, b in zip(*(jax.tree.leaves(eqx.filter(g, eqx.is_array))
                                                        for _, g, _ in runs.values()))]  # fmt: skip
    fast, slow = runs["closed_form_jvp"], runs["loops_differentiated"]
    emit("von_mises_pathwise_compile_speedup", slow[0] / fast[0], "x", baseline="loops_differentiated",
         max_gradient_difference=float(max(leaves)))  # fmt: skip
    emit("von_mises_pathwise_step_speedup", slow[2] / fast[2], "x", baseline="loops_differentiated")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--flow-layers", type=int, default=4, help="MAF layers (hidden widths and BNAF factors are "
                        "chosen to match the arjax MADE's parameter count)")
    parser.add_argument("--cache-d-model", type=int, default=128)
    parser.add_argument("--cache-batch", type=int, default=64)
    parser.add_argument("--pathwise-positions", type=int, default=8)
    parser.add_argument("--pathwise-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every path runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.steps, args.components, args.width, args.d_model = 1000, 20, 2, 16, 16
        args.cache_d_model, args.cache_batch, args.repeats = 16, 4, 1
    emit_environment()
    for section in chosen_sections(parser, args.sections, SECTIONS):
        {"density": density_section, "cache": cache_section, "pathwise": pathwise_section}[section](args)


if __name__ == "__main__":
    main()
