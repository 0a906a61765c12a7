"""Held-out NLL against parameter count for a family of Transformers, with a fitted power law.

In the spirit of Kaplan et al., "Scaling laws for neural language models" (2020): train causal
``arjax.nn.Transformer`` nets of several widths (``--d-models``, ``--layers`` each) on the same data
with the same budget (``fit_mle``, Adam, at most ``--steps`` steps, early stopping on a held-out
set), measure the test NLL L in nats per sequence, and fit

    L(P) = (P_c / P)^α + L_∞

to the parameter counts P (non-embedding parameters are not separated at this size: P counts
everything) with ``scipy.optimize.curve_fit``. The data (``--data``) are bitstrings of the random
circuit of ``examples/quantum_bitstrings.py`` (default; n = ``--n`` qubits, M = ``--samples``), whose
exact entropy H(p) is the floor L_∞ should approach (printed beside the fit), or the binarised
digits of ``examples/digits.py`` (no known floor).

What it shows at this scale (2-core CPU, default settings otherwise):

- circuit data (default; n = 10, M = 2·10⁴, ≤ 600 steps; 142 s): test NLL 6.897, 6.877, 6.882,
  6.895, 6.885 nats for P = 558, 1 882, 6 834, 25 954, 101 058 (uniform 6.931, H(p) = 6.516). A
  Porter–Thomas distribution has no structure to generalise from, so a net can only get below
  n ln 2 by memorising the noisy histogram of its M bitstrings; at this budget no size does (all
  within 0.06 nats of uniform) and the fit is meaningless (α = 0.01 ± 1).
- digits (``--data digits --d-models 8 16 32 64 96``; 1 258 training images; 758 s): test NLL
  19.36, 18.67, 17.56, 18.03, 20.31 nats for P = 2 314, 7 698, 27 682, 104 514, 230 498, train NLL
  18.89, 17.99, 16.53, 16.79, 19.51. The loss falls with P up to ~3·10⁴ parameters; beyond, 600 steps
  under-train the larger nets (their *train* NLL rises too), so the fit (α = 0.01 ± 0.3) describes
  a budget-limited curve, not a scaling law.

Small nets are under-trained rather than capacity-limited at such budgets, so the fitted L_∞ says
more about the budget than about the data: for a meaningful curve grow the steps (and M) with P,
as Kaplan et al. do, e.g. ``--steps 20000 --patience 5000`` on a free machine. The fit describes
the points; it is not an extrapolation.

Run:
    python examples/scaling.py --quick                       # 5 tiny sizes, a smoke run
    python examples/scaling.py                               # circuit data, 5 sizes (~2.5 min on a 2-core CPU)
    python examples/scaling.py --data digits --d-models 8 16 32 64 96   # ~13 min
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from circuits import circuit_distribution, sample_bitstrings  # noqa: E402
from quantum_bitstrings import count_params, fit_early_stopping  # noqa: E402

from arjax.nn import Transformer  # noqa: E402
from arjax.train import evaluate_nll  # noqa: E402


def power_law(p, p_c, alpha, l_inf):
    return (p_c / p) ** alpha + l_inf


def load_data(args):
    """(train, valid, test, floor, description): floor is the exact entropy where it is known."""
    rng = np.random.default_rng(args.seed + 1)
    if args.data == "circuit":
        p = circuit_distribution(args.n, args.depth, args.seed, layout="line")
        bits = sample_bitstrings(p, args.samples + 2 * args.test_samples, rng)
        test, valid, train = np.split(bits, [args.test_samples, 2 * args.test_samples])
        floor = float(-np.sum(p * np.log(p)))
        return train, valid, test, floor, f"random circuit n={args.n} (line, {args.depth} cycles), M={len(train)}"
    from digits import load_binary_digits, split

    train, valid, test = split(load_binary_digits()[0], args.seed, 0.1, 0.2)
    return train, valid, test, None, f"binarised digits, {len(train)} train images"


def run(args):
    train, valid, test, floor, description = load_data(args)
    n = train.shape[1]
    print(f"{description}; {len(valid)} valid, {len(test)} test; Transformer, {args.layers} layers, "
          f"{args.heads} heads; Adam lr {args.lr:g}, batch {args.batch_size}, ≤ {args.steps} steps")
    if floor is not None:
        print(f"floor: H(p_true) = {floor:.4f} nats; uniform: n ln 2 = {n * np.log(2):.4f}")
    print(f"{'d_model':>8}{'params':>9}{'test NLL':>10}{'train NLL':>11}{'step':>7}{'time':>8}")
    rows = []
    eval_batch = max(args.batch_size, 256)  # the chunk fit_mle scores the valid set in: one compiled scorer per size
    for i, d in enumerate(args.d_models):
        init_key, fit_key = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), i))
        start = time.perf_counter()
        net = Transformer(n, 2, d_model=d, num_heads=args.heads, num_layers=args.layers, key=init_key)
        net, step, _ = fit_early_stopping(net, train, valid, lr=args.lr, batch_size=args.batch_size, steps=args.steps,
                                          log_every=args.log_every, patience=args.patience, key=fit_key,
                                          progress=args.progress)  # fmt: skip
        row = dict(d_model=d, params=count_params(net), test=evaluate_nll(net, test, batch_size=eval_batch),
                   train=evaluate_nll(net, train, batch_size=eval_batch), step=step, time=time.perf_counter() - start)
        rows.append(row)
        print(f"{d:>8d}{row['params']:>9d}{row['test']:>10.4f}{row['train']:>11.4f}{step:>7d}{row['time']:>7.1f}s",
              flush=True)
    return rows, floor, n


def fit_power_law(rows):
    """Least-squares (P_c, α, L_∞) of L(P) = (P_c/P)^α + L_∞, or None if the fit fails."""
    from scipy.optimize import curve_fit

    params = np.array([r["params"] for r in rows], float)
    loss = np.array([r["test"] for r in rows])
    guess = (params.min(), 0.3, loss.min() - 0.5 * (loss.max() - loss.min()))
    try:
        bounds = ([1e-12, 1e-2, 0.0], [1e15, 3.0, loss.min()])
        (p_c, alpha, l_inf), cov = curve_fit(power_law, params, loss, p0=guess, bounds=bounds, maxfev=20_000)
    except (RuntimeError, ValueError) as error:
        print(f"power-law fit failed: {error}")
        return None
    return dict(p_c=p_c, alpha=alpha, l_inf=l_inf, err=np.sqrt(np.diag(cov)))


def plot(rows, fit, floor, n, args, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = np.array([r["params"] for r in rows], float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    ax.loglog(params, [r["test"] for r in rows], "o", label="test NLL")
    ax.loglog(params, [r["train"] for r in rows], "x", color="C0", alpha=0.6, label="train NLL")
    if fit is not None:
        grid = np.geomspace(params.min() / 2, params.max() * 4, 100)
        ax.loglog(grid, power_law(grid, fit["p_c"], fit["alpha"], fit["l_inf"]), "-", color="C1",
                  label=f"$(P_c/P)^\\alpha + L_\\infty$: α={fit['alpha']:.2f}, $L_\\infty$={fit['l_inf']:.3f}")
    if floor is not None:
        ax.axhline(floor, color="k", lw=0.8, label=f"H(p_true) = {floor:.3f}")
        ax.axhline(n * np.log(2), color="grey", lw=0.8, ls=":", label=f"uniform n ln 2 = {n * np.log(2):.3f}")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    low, high = ax.get_ylim()  # less than a decade: label evenly spaced ticks, not just powers of ten
    ax.set_yticks(np.geomspace(low, high, 7)[1:-1])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters P")
    ax.set_ylabel("NLL [nats per sequence]")
    ax.set_title(f"Transformer scaling, {args.data} data, {args.layers} layers, ≤ {args.steps} steps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: n=6 circuit, M=1024, d_model 4 8 12 16 24, 1 layer, 30 steps")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the plot (default out/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("circuit", "digits"), default="circuit")
    parser.add_argument("--n", type=int, default=10, help="qubits of the circuit data")
    parser.add_argument("--depth", type=int, default=12, help="circuit cycles")
    parser.add_argument("--samples", type=int, default=20_000, help="training bitstrings M")
    parser.add_argument("--test-samples", type=int, default=5_000, help="bitstrings for each of valid and test")
    parser.add_argument("--d-models", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600, help="most Adam steps per size")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--patience", type=int, default=300)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.depth, args.samples, args.test_samples = 6, 8, 1024, 512
        args.d_models, args.layers, args.steps, args.log_every, args.patience = [4, 8, 12, 16, 24], 1, 30, 30, 30
    if len(args.d_models) < 3:
        parser.error("give at least 3 sizes (--d-models) for a 3-parameter fit")
    bad = [d for d in args.d_models if d % args.heads]
    if bad:
        parser.error(f"every d_model must be divisible by --heads {args.heads}, got {bad}")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows, floor, n = run(args)
    fit = fit_power_law(rows)
    if fit is not None:
        e = fit["err"]
        print(f"fit L(P) = (P_c/P)^α + L_∞: P_c = {fit['p_c']:.4g} ± {e[0]:.2g}, α = {fit['alpha']:.3f} ± {e[1]:.2g}, "
              f"L_∞ = {fit['l_inf']:.4f} ± {e[2]:.2g} nats")
    if floor is not None:
        gap = "" if fit is None else f"; L_∞ - H = {fit['l_inf'] - floor:.4f}"
        print(f"floor H(p_true) = {floor:.4f} nats{gap}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scaling_{args.data}.png"
    plot(rows, fit, floor, n, args, path)
    print(f"plot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
