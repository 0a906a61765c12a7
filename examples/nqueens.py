"""Find every solution of the n-queens problem with an autoregressive model trained by ``fit_reward``.

A board is a sequence of n tokens, ``x[i]`` = the column of the queen in row ``i`` (rows never
clash). ``arjax.targets.NQueens(n).energy`` counts attacking pairs. We train a MADE ``q`` by
entropy-regularised reward maximisation, ``min_q E_q[-r] + T E_q[ln q]`` with ``r = -energy``
(``--reward energy``, the default) or ``r = 1[valid]`` (``--reward validity``), whose optimum is
``q ∝ e^{r/T}``; annealing ``T`` from ``--t-start`` to ``--t-end`` (an optax schedule) moves ``q``
from near-uniform boards to a near-uniform distribution over the solutions, so sampling it finds
all of them, not just one. Every ``--eval-every`` steps we sample ``q`` and count the distinct
valid boards seen so far; at the end we compare ``q``'s valid fraction with uniform random
placement (one queen per row: ``count / n**n``) and the number of distinct solutions found with
the known count (OEIS A000170).

Run:
    python examples/nqueens.py --quick            # n = 6, seconds
    python examples/nqueens.py                    # n = 8: all 92 solutions
    python examples/nqueens.py --n 10 --steps 4000 --batch 1024
"""

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax

from arjax import Autoregressive
from arjax.nn import MADE
from arjax.targets import NQueens
from arjax.train import fit_reward


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="board size (queens)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--batch", type=int, default=512, help="samples per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    parser.add_argument("--reward", choices=["energy", "validity"], default="energy",
                        help="r = -(attacking pairs), or r = 1 for a solution and 0 otherwise")
    parser.add_argument("--t-start", type=float, default=2.0, help="initial temperature T")
    parser.add_argument("--t-end", type=float, default=0.2, help="final temperature T")
    parser.add_argument("--anneal-fraction", type=float, default=0.6,
                        help="fraction of the steps over which T decays (cosine) from --t-start to --t-end")
    parser.add_argument("--width", type=int, default=0, help="MADE hidden width (0: 32 n)")
    parser.add_argument("--depth", type=int, default=2, help="MADE hidden layers")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--eval-samples", type=int, default=4096, help="samples per evaluation during training")
    parser.add_argument("--final-samples", type=int, default=100_000, help="samples drawn from the trained model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="n = 6, 300 steps (a smoke test)")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the PNG plot")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.steps, args.batch, args.eval_every, args.final_samples = 6, 300, 256, 50, 20_000
    return args


def main(argv=None):
    args = parse_args(argv)
    target = NQueens(args.n)
    known = target.known_solution_count
    key_net, key_train, key_eval, key_final, key_uniform = jax.random.split(jax.random.key(args.seed), 5)
    net = MADE(num_positions=args.n, num_categories=args.n, width=args.width or 32 * args.n, depth=args.depth,
               key=key_net)
    reward_fn = target.reward if args.reward == "validity" else (lambda x: -target.energy(x))
    schedule = optax.cosine_decay_schedule(args.t_start, max(1, int(args.anneal_fraction * args.steps)),
                                           alpha=args.t_end / args.t_start)

    @eqx.filter_jit
    def sample_boards(net, key, count):
        x = Autoregressive(net).sample(key, (count,))
        return x, jax.vmap(target.is_valid)(x)

    found: set[tuple[int, ...]] = set()
    curve = []

    def evaluate(step, net, metrics):
        x, valid = sample_boards(net, jax.random.fold_in(key_eval, step), args.eval_samples)
        boards = {tuple(b) for b in np.asarray(x)[np.asarray(valid)].tolist()}
        found.update(boards)
        curve.append((step, len(boards), len(found), float(np.mean(valid))))

    start = time.perf_counter()
    net, history = fit_reward(net, reward_fn, temperature_schedule=schedule, optimizer=optax.adam(args.lr),
                              num_steps=args.steps, batch_size=args.batch, key=key_train, log_every=args.eval_every,
                              callback=evaluate)
    train_seconds = time.perf_counter() - start

    final: set[tuple[int, ...]] = set()
    num_valid = 0
    chunk = min(args.final_samples, 20_000)
    for i in range(-(-args.final_samples // chunk)):
        x, valid = sample_boards(net, jax.random.fold_in(key_final, i), chunk)
        num_valid += int(np.sum(valid))
        final.update(tuple(b) for b in np.asarray(x)[np.asarray(valid)].tolist())
    drawn = chunk * -(-args.final_samples // chunk)
    total_seconds = time.perf_counter() - start

    uniform_x = jax.random.randint(key_uniform, (drawn, args.n), 0, args.n)
    uniform_valid = float(np.mean(np.asarray(jax.jit(jax.vmap(target.is_valid))(uniform_x))))
    exact_uniform = known / args.n**args.n if known is not None else float("nan")
    all_found = found | final

    print(f"n = {args.n}: {args.steps} steps × batch {args.batch}, reward {args.reward}, "
          f"T {args.t_start} → {args.t_end}; training {train_seconds:.1f} s, total {total_seconds:.1f} s")
    print(f"{'':28s}{'valid fraction':>16s}")
    print(f"{'trained q':28s}{num_valid / drawn:16.4g}   ({num_valid} of {drawn} samples)")
    print(f"{'uniform, exact count/n^n':28s}{exact_uniform:16.4g}")
    print(f"{'uniform, sampled':28s}{uniform_valid:16.4g}   ({drawn} samples)")
    print(f"ratio q / uniform: {num_valid / drawn / exact_uniform:.4g}")
    print(f"distinct solutions in the final {drawn} samples: {len(final)} of {known}")
    print(f"distinct solutions seen during training and at the end: {len(all_found)} of {known}")
    print(f"final entropy S_q = {history['entropy'][-1]:.3f} nats (ln {known} = {np.log(max(known or 1, 1)):.3f})")

    path = plot(args, curve, history, known, exact_uniform)
    print(f"plot: {path}")


def plot(args, curve, history, known, exact_uniform) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, per_sample, cumulative, valid = map(np.asarray, zip(*curve))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, cumulative, "o-", label="distinct solutions seen so far")
    ax1.plot(steps, per_sample, "s-", label=f"distinct in {args.eval_samples} samples")
    if known is not None:
        ax1.axhline(known, color="k", ls="--", label=f"all solutions ({known})")
    ax1.set_xlabel("step")
    ax1.set_ylabel("solutions")
    ax1.set_title(f"{args.n}-queens: solutions found")
    ax1.legend(loc="lower right")
    ax2.semilogy(steps, np.where(valid > 0, valid, np.nan), "o-", label="trained q (none valid: no point)")
    ax2.axhline(exact_uniform, color="k", ls="--", label="uniform placement")
    ax2.set_xlabel("step")
    ax2.set_ylabel("valid fraction")
    twin = ax2.twinx()
    twin.plot(history["step"], history["temperature"], color="grey", alpha=0.5)
    twin.set_ylabel("temperature T", color="grey")
    ax2.legend(loc="lower right")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"nqueens_n{args.n}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.resolve()


if __name__ == "__main__":
    main()
