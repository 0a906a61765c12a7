"""Learn the output distribution of a random quantum circuit from measured bitstrings.

A Sycamore-style random circuit (Arute et al., Nature 574, 505 (2019); ``examples/circuits.py``:
cycles of random √X/√Y/√W gates, never the same twice in a row on a qubit, and fSim(π/2, π/6)
couplers on a grid or a line) on n qubits is simulated exactly with a numpy state vector, so all
2ⁿ probabilities p(x) = |⟨x|Ψ⟩|² are known. M bitstrings drawn from p are the data; 10 % of them
are held out. A causal ``arjax.nn.Transformer`` q is fitted with ``arjax.train.fit_mle``, keeping
the parameters with the lowest held-out NLL (early stopping), and then compared with p exactly:

- KL(p ‖ q) = Σ_x p ln(p/q) over all 2ⁿ bitstrings (``Autoregressive(net).log_prob`` on every one);
- the linear cross-entropy benchmark F_XEB = 2ⁿ E_{x∼q}[p(x)] - 1, from ``--model-samples`` exact
  samples of q and, since q is enumerable too, exactly (2ⁿ Σ_x q p - 1). An exact sampler of p scores
  2ⁿ Σ p² - 1 ≈ 1 (Porter–Thomas), the uniform distribution 0;
- the same for the empirical histogram of the M bitstrings: KL(p ‖ p_emp) is infinite as soon as
  one bitstring was never seen (the fraction missing is printed), so the table gives it with
  add-½ (Krichevsky–Trofimov) smoothing; F_XEB of the data is that of exact samples, ≈ 1 ± O(1/√M).

References printed with the table: the entropy H(p) (≈ n ln 2 - (1 - γ) for Porter–Thomas), the
best possible mean NLL per bitstring, and KL(p ‖ uniform) = n ln 2 - H(p) ≈ 0.42 nats, the score
of a model that learnt nothing. A Porter–Thomas distribution has no structure a small net can
exploit — every one of the 2ⁿ probabilities is its own random number — so the model must
essentially memorise the histogram; the figure shows KL and F_XEB against M.

Measured (defaults: n = 12, 3×4 grid, 14 cycles, H(p) = 7.885, KL(p‖uniform) = 0.4326, ideal
F_XEB = 1.024; 2-core CPU at load ≈ 12, one process per M):

    M      Transformer (10⁵ params)             data (histogram)
    10⁴    KL 0.4328, F_XEB 0.003 (best step 200)  KL_add-½ 0.145, F_XEB 1.021, 28.9 % missing   1264 s
    10⁵    KL 0.4271, F_XEB 0.013 (best step 1200) KL_add-½ 0.020, F_XEB 1.025,  4.2 % missing   2387 s

Within this budget (≤ 2000 steps, early stopping after 600 without improvement) the Transformer
barely leaves the uniform distribution — its held-out NLL sits at n ln 2 for the first ~10³
steps — while the smoothed histogram, which a 2¹² table can afford, is far better. Give it a
longer run (``--steps 20000 --patience 5000``) on a free machine to see it learn.

Run:
    python examples/quantum_bitstrings.py --quick                        # n = 8, a smoke run
    python examples/quantum_bitstrings.py                                # n = 12, M = 10³, 10⁴, 10⁵
    python examples/quantum_bitstrings.py --n 12 --depth 20 --samples 10000 100000 --steps 20000
"""

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
from circuits import (
    circuit_distribution,
    kl_divergence,
    linear_xeb,
    porter_thomas_entropy,
    sample_bitstrings,
    to_index,
)

import arjax
from arjax.nn import Transformer
from arjax.testing import all_sequences
from arjax.train import evaluate_nll, fit_mle


def make_transformer(n: int, d_model: int, num_heads: int, num_layers: int, key) -> Transformer:
    return Transformer(n, 2, d_model=d_model, num_heads=num_heads, num_layers=num_layers, key=key)


def count_params(net) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array)))


def fit_early_stopping(net, data, valid, *, lr, batch_size, steps, log_every, patience, key, progress=False):
    """``fit_mle`` for at most ``steps`` steps, returning the parameters with the lowest held-out NLL,
    the step they were reached at, and the history. Stops after ``patience`` steps without improvement."""
    best = dict(nll=np.inf, net=net, step=0)

    def keep_best(step, net, metrics):
        if metrics["eval_nll"] < best["nll"]:
            best.update(nll=float(metrics["eval_nll"]), net=net, step=step)
        return step - best["step"] >= patience

    _, history = fit_mle(net, data, optimizer=optax.adam(lr), batch_size=min(batch_size, len(data)), key=key,
                         num_steps=steps, eval_data=valid, log_every=log_every, progress=progress,
                         callback=keep_best)  # fmt: skip
    return best["net"], best["step"], history


def empirical_histogram(bits: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(to_index(bits), minlength=2**n) / len(bits)


def model_probabilities(net, n: int) -> np.ndarray:
    """q(x) for all 2ⁿ bitstrings in index order (``all_sequences`` is lexicographic, qubit 0 first)."""
    log_q = np.asarray(arjax.Autoregressive(net).log_prob(all_sequences(n, 2)), np.float64)
    return np.exp(log_q)


def run(args):
    n = args.n
    p = circuit_distribution(n, args.depth, args.seed, layout=args.layout, cols=args.cols)
    entropy = float(-np.sum(p * np.log(p)))
    ideal_xeb = float(2**n * np.sum(p**2) - 1)
    print(f"random circuit: n={n} qubits on a {layout_name(args)}, {args.depth} cycles, fSim(π/2, π/6); "
          f"H(p) = {entropy:.4f} nats (Porter–Thomas: {porter_thomas_entropy(n):.4f}), "
          f"KL(p‖uniform) = {n * np.log(2) - entropy:.4f}, ideal F_XEB = 2ⁿΣp² - 1 = {ideal_xeb:.4f}")
    print(f"Transformer d_model={args.d_model}, {args.heads} heads, {args.layers} layers; Adam lr {args.lr:g}, "
          f"batch {args.batch_size}, ≤ {args.steps} steps, early stopping on {args.valid_fraction:.0%} held out")
    print(f"{'M':>8}{'source':>9}{'KL(p‖·)':>10}{'F_XEB':>8}{'exact':>8}{'NLL':>8}{'missing':>9}"
          f"{'step':>7}{'time':>8}")
    rng = np.random.default_rng(args.seed + 1)
    root = jax.random.key(args.seed)
    rows = []
    for i, m in enumerate(args.samples):
        bits = sample_bitstrings(p, m, rng)
        num_valid = max(1, round(args.valid_fraction * m))
        valid, train = bits[:num_valid], bits[num_valid:]
        init_key, fit_key, sample_key = jax.random.split(jax.random.fold_in(root, i), 3)
        start = time.perf_counter()
        net = make_transformer(n, args.d_model, args.heads, args.layers, init_key)
        net, best_step, _ = fit_early_stopping(net, train, valid, lr=args.lr, batch_size=args.batch_size,
                                               steps=args.steps, log_every=args.log_every, patience=args.patience,
                                               key=fit_key, progress=args.progress)  # fmt: skip
        q = model_probabilities(net, n)
        model_bits = np.asarray(arjax.Autoregressive(net).sample(sample_key, (args.model_samples,)))
        emp = empirical_histogram(bits, n)
        smoothed = (emp * m + 0.5) / (m + 0.5 * 2**n)
        row = dict(
            M=m, params=count_params(net), step=best_step, time=time.perf_counter() - start,
            model_kl=kl_divergence(p, q), model_xeb=linear_xeb(p, model_bits), model_xeb_exact=float(2**n * q @ p - 1),
            model_nll=evaluate_nll(net, valid), model_mass=float(q.sum()),
            data_kl=kl_divergence(p, emp), data_kl_smoothed=kl_divergence(p, smoothed), data_xeb=linear_xeb(p, bits),
            missing=float(np.mean(emp == 0)), data_xeb_exact=float(2**n * emp @ p - 1),
        )  # fmt: skip
        rows.append(row)
        print(f"{m:>8d}{'model':>9}{row['model_kl']:>10.4f}{row['model_xeb']:>8.3f}{row['model_xeb_exact']:>8.3f}"
              f"{row['model_nll']:>8.3f}{'':>9}{best_step:>7d}{row['time']:>7.1f}s")
        print(f"{m:>8d}{'data':>9}{row['data_kl_smoothed']:>10.4f}{row['data_xeb']:>8.3f}{'':>8}{'':>8}"
              f"{row['missing']:>9.1%}{'':>7}{'':>8}", flush=True)
    print(f"model: KL exact over all 2^{n} bitstrings; F_XEB from {args.model_samples} samples of q, 'exact' = "
          f"2ⁿΣqp - 1; NLL on the held-out bitstrings (floor H(p) = {entropy:.4f}); {rows[-1]['params']} parameters.")
    print("data: KL(p‖p_emp) is infinite whenever a bitstring is missing; shown with add-½ smoothing. "
          "F_XEB of the data itself.")
    return rows, dict(entropy=entropy, ideal_xeb=ideal_xeb, kl_uniform=n * np.log(2) - entropy)


def layout_name(args) -> str:
    return f"{args.n // args.cols}×{args.cols} grid" if args.layout == "grid" else "line"


def plot(rows, ref, args, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([r["M"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax1.loglog(m, [r["model_kl"] for r in rows], "o-", label="Transformer q")
    ax1.loglog(m, [r["data_kl_smoothed"] for r in rows], "s--", label="empirical histogram (add-½)")
    span = np.geomspace(m.min() / 2, m.max() * 2, 50)
    ax1.loglog(span, (2**args.n - 1) / (2 * span), ":", color="grey", label="(2ⁿ-1)/2M (histogram, large M)")
    ax1.axhline(ref["kl_uniform"], color="k", lw=0.8, label="uniform")
    from matplotlib.ticker import ScalarFormatter

    ax1.yaxis.set_major_formatter(ScalarFormatter())
    ax1.set_xlabel("training bitstrings M")
    ax1.set_ylabel("KL(p_true ‖ ·)  [nats]")
    ax1.legend(fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.semilogx(m, [r["model_xeb"] for r in rows], "o-", label="samples of q")
    ax2.semilogx(m, [r["data_xeb"] for r in rows], "s--", label="the data")
    ax2.axhline(ref["ideal_xeb"], color="k", lw=0.8, label="exact sampler 2ⁿΣp²-1")
    ax2.axhline(0, color="grey", lw=0.8, ls=":", label="uniform")
    ax2.set_xlabel("training bitstrings M")
    ax2.set_ylabel("linear XEB  2ⁿ E[p_true(x)] - 1")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"random circuit, n={args.n} ({layout_name(args)}), {args.depth} cycles")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: n=8 on a 2×4 grid, 8 cycles, M = 2000, d_model 16, 1 layer, 100 steps")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the plot (default out/)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the circuit, the samples and the nets")
    parser.add_argument("--n", type=int, default=12, help="qubits (≤ 16: every bitstring is enumerated)")
    parser.add_argument("--depth", type=int, default=14, help="cycles (Sycamore: 20)")
    parser.add_argument("--layout", choices=("grid", "line"), default="grid")
    parser.add_argument("--cols", type=int, default=4, help="grid columns (must divide n)")
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 10_000, 100_000],
                        help="numbers M of measured bitstrings, one fit each")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="share of the M held out")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000, help="most Adam steps per fit")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--log-every", type=int, default=100, help="steps between held-out NLLs")
    parser.add_argument("--patience", type=int, default=600, help="stop after this many steps without improvement")
    parser.add_argument("--model-samples", type=int, default=100_000, help="samples of q for its F_XEB")
    parser.add_argument("--progress", action="store_true", help="show a progress bar while training")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.depth, args.cols, args.samples = 8, 8, 4, [2000]
        args.d_model, args.heads, args.layers, args.steps, args.log_every, args.patience = 16, 2, 1, 100, 50, 100
        args.batch_size, args.model_samples = 128, 10_000
    if not 2 <= args.n <= 16:
        parser.error(f"--n must be in 2..16 (all 2ⁿ bitstrings are enumerated), got {args.n}")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows, ref = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"quantum_bitstrings_n{args.n}.png"
    plot(rows, ref, args, path)
    print(f"plot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
