"""Learn a 2D Ising ferromagnet from its energy alone: VAN's Fig. 2(a) with arjax.

Variational Autoregressive Networks (Wu, Wang, Zhang, PRL 122, 080602 (2019)) minimise the
variational free energy F_q = E_q[E + T ln q] ≥ F over an autoregressive q, with exact samples of q
and the score-function gradient. Their Fig. 2(a) is the 16×16 periodic ferromagnet (J = 1) at
β = 0.1 … 1, with a PixelCNN of depth 3, width 64 and half-kernel 6
(``arjax.nn.PixelCNN.van_default(16)``), batch 1000, Adam at lr 1e-3, the β-annealing
β_t = β(1 - 0.998^{t+1}), Z₂ symmetry q_z2(x) = ½[q(x) + q(1-x)], gradient clipping at norm 1, and
10⁴ steps per β. Each (β, net) here is trained from scratch with ``arjax.train.fit_free_energy``,
then evaluated with ``arjax.estimators.free_energy`` on more samples, against the exact F of the
finite torus from Kaufman's formula (``IsingSquare.exact_free_energy``).

The default budget is for a 2-core CPU: L = 8, 500 steps × batch 500 at lr 1e-2 (VAN: 1e-3, which
is too slow for 500 steps), mean field and MADE (a few minutes). On this CPU one training step at
L = 16 costs about 0.3 s for MADE at batch 1000 and 1.5 s for the PixelCNN at batch 100 (see
benchmarks/vfe.py), so
VAN's full budget (``--L 16 --nets pixelcnn --steps 10000 --batch-size 1000 --anneal 0.998``, 10
betas) is days of CPU time: run it on a GPU. With few steps VAN's anneal factor
0.998 would leave β_t far below β at the end, so ``--anneal auto`` uses a = min(0.998, 1 - 10/steps):
β_t is within e^{-5} of β halfway through and within e^{-10} at the end (exactly 0.998 at ≥ 5000 steps).

Nets (``--nets``): ``meanfield`` (naive mean field), ``made`` (MADE depth 2, width 4N: the analogue
of VAN's ``--net made --net_depth 3 --net_width 4``) and ``pixelcnn`` (VAN's default PixelCNN).

``--eval-at 1000 5000`` evaluates each net at these steps of one run as well as at the end (the run
continues from each evaluation with its Adam state, without recompiling), and ``--checkpoint DIR``
makes the run resumable: each (net, β) checkpoints every 50 steps to ``DIR`` and keeps its
evaluated rows in ``DIR/rows.jsonl``, so a killed run started again with the same command
continues where it stopped and prints every row it had evaluated. ``--ladder`` trains the betas in
order as the rungs of one run per net, each rung continuing from the previous one's net and Adam
state instead of starting afresh.

Run:
    python examples/ising_van.py --quick                # < 1 min: L=4, 2 betas, mean field + MADE
    python examples/ising_van.py                        # L=8, 4 betas, mean field + MADE (minutes)
    python examples/ising_van.py --nets pixelcnn --L 16 --betas 0.44 --steps 5000 --eval-at 1000 \
        --batch-size 100 --lr 1e-3 --anneal none --eval-samples 4000 --checkpoint runs/pixelcnn16
        # VAN's PixelCNN on 16×16 at β = 0.44, evaluated after 1000 and 5000 steps (2 h on a 2-core
        # CPU; the measured rows are in docs/learn-from-energy.md, "VAN's 16×16 setting")
    python examples/ising_van.py --nets meanfield made pixelcnn --L 16 --steps 10000 --batch-size 1000 \
        --anneal 0.998 --betas 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1.0   # VAN's Fig. 2(a) budget (GPU)
"""

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from arjax.estimators import free_energy
from arjax.nn import MADE, MeanField, PixelCNN
from arjax.targets import BETA_CRITICAL, IsingSquare
from arjax.train import fit_free_energy

NETS = ("meanfield", "made", "pixelcnn")


def make_net(name: str, L: int, key):
    """The variational nets compared in VAN's Fig. 2(a) (plus the mean-field baseline)."""
    n = L * L
    if name == "meanfield":
        return MeanField(n, 2, key=key)
    if name == "made":
        return MADE(n, 2, depth=2, width=4 * n, key=key)
    if name == "pixelcnn":
        return PixelCNN.van_default(L, key=key)
    raise ValueError(f"unknown net {name!r}; choose from {NETS}")


def auto_anneal(steps: int) -> float:
    """VAN's 0.998, or faster for short runs so that β_t reaches β well before the last step."""
    return min(0.998, 1.0 - 10.0 / steps)


def resolved_anneal(args) -> float | None:
    if args.anneal == "auto":
        return auto_anneal(args.steps)
    return None if args.anneal == "none" else float(args.anneal)


def run(args) -> list[dict]:
    """Train and evaluate every (net, β) at each of ``eval_steps(args)``; returns one row per evaluation.

    A run is trained in segments, one ``fit_free_energy`` call per evaluation step, each continuing
    the previous one's ``TrainState`` (net and Adam state); the segments end bit-identical to an
    uninterrupted run. β, the key and the parameters are traced inputs of the compiled steps, so
    all segments and all betas of one net share one compilation. With ``--checkpoint`` every
    segment also writes its checkpoint, from which a killed run resumes. With ``--ladder`` the
    betas are the rungs of one run per net: rung j takes the steps j·S … (j+1)·S - 1 (S = --steps),
    as one β schedule of the whole run, and starts from rung j - 1's net and Adam state.
    """
    target = IsingSquare(args.L)
    anneal = resolved_anneal(args)
    root = jax.random.key(args.seed)
    stops = eval_steps(args)
    saved = load_rows(args.checkpoint)
    optimizer = optax.adam(args.lr)  # one object for every call: a new optax.adam would be compiled anew
    runs = [list(enumerate(args.betas))] if args.ladder else [[(j, beta)] for j, beta in enumerate(args.betas)]
    rows = []
    for i, name in enumerate(args.nets):
        for rungs in runs:
            init_key, fit_key, _ = run_keys(root, i, rungs[0][0])
            beta = ladder_beta([b for _, b in rungs], args.steps) if args.ladder else rungs[0][1]
            label = "ladder_" + "_".join(f"{b:g}" for _, b in rungs) if args.ladder else f"beta{rungs[0][1]:g}"
            checkpoint = None if args.checkpoint is None else args.checkpoint / f"{name}_L{args.L}_{label}.ckpt"
            net, state = make_net(name, args.L, init_key), None
            for rung, (j, beta_j) in enumerate(rungs):
                eval_key = run_keys(root, i, j)[2]
                done = {r["step"]: r for r in saved
                        if (r["net"], r["L"], r["beta"], r.get("ladder", False)) == (name, args.L, beta_j, args.ladder)}
                start = time.perf_counter()
                for step in stops:
                    if step in done:
                        row = done[step]
                    else:
                        end = rung * args.steps + step
                        trained, history, state = fit_free_energy(
                            net, target, beta, optimizer=optimizer, num_steps=end, batch_size=args.batch_size,
                            key=fit_key, anneal=anneal, symmetry="z2", clip_grad=1.0, log_every=min(args.steps, 50),
                            progress=args.progress, checkpoint=checkpoint, resume=state, return_state=True,
                        )
                        if len(history["step"]) != end:
                            raise SystemExit(f"{checkpoint} holds {len(history['step'])} steps, more than {end}; "
                                             "use a fresh --checkpoint directory")
                        row = evaluated_row(trained, target, name, beta_j, step, jax.random.fold_in(eval_key, step),
                                            args, start)  # fmt: skip
                        save_row(args.checkpoint, row)
                    rows.append(row)
                    print_row(row)
    return rows


def run_keys(root, net_index: int, beta_index: int):
    """The (init, fit, eval) keys of one net at one β (a ladder uses its first β's init and fit keys)."""
    return jax.random.split(jax.random.fold_in(jax.random.fold_in(root, net_index), beta_index), 3)


def ladder_beta(betas: list[float], steps: int):
    """The schedule β(t) = betas[t // steps] of a ladder whose rungs are ``steps`` long."""
    table = jnp.asarray(betas)
    return lambda t: table[jnp.minimum(t // steps, len(betas) - 1)]


def eval_steps(args) -> list[int]:
    """The steps at which every net is evaluated: ``--eval-at`` and the last step, in order."""
    extra = args.eval_at or []
    if any(not 0 < s <= args.steps for s in extra):
        raise SystemExit(f"--eval-at steps must lie in 1..{args.steps} (--steps), got {extra}")
    return sorted(set(extra) | {args.steps})


def evaluated_row(net, target, name: str, beta: float, step: int, key, args, start: float) -> dict:
    """F_var, F_IS and ESS per site from ``--eval-samples`` fresh samples, against Kaufman's exact F."""
    n = target.num_positions
    train_time = time.perf_counter() - start
    est = free_energy(net, target, beta, key, args.eval_samples, symmetry="z2").per_site(n)
    exact = target.exact_free_energy(beta) / n
    row = dict(
        net=name, L=args.L, beta=beta, step=step, f_var=float(est.variational), f_var_err=float(est.variational_stderr),
        f_is=float(est.importance), f_is_err=float(est.importance_stderr), ess=float(est.ess),
        exact=exact, time=time.perf_counter() - start, train_time=train_time, ladder=args.ladder,
    )
    row["rel_var"] = (row["f_var"] - exact) / abs(exact)
    row["rel_is"] = (row["f_is"] - exact) / abs(exact)
    return row


def load_rows(directory: Path | None) -> list[dict]:
    """Rows evaluated by an earlier, interrupted run with the same ``--checkpoint``."""
    path = None if directory is None else directory / "rows.jsonl"
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_row(directory: Path | None, row: dict) -> None:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "rows.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


HEADER = (f"{'net':<10}{'beta':>6}{'F_var/N':>12}{'± err':>9}{'F_IS/N':>12}{'± err':>9}{'ESS':>9}"
          f"{'exact F/N':>12}{'rel F_var':>11}{'rel F_IS':>11}{'time':>8}{'step':>7}")


def print_row(r: dict) -> None:
    print(f"{r['net']:<10}{r['beta']:>6.3g}{r['f_var']:>12.6f}{r['f_var_err']:>9.1e}{r['f_is']:>12.6f}"
          f"{r['f_is_err']:>9.1e}{r['ess']:>9.0f}{r['exact']:>12.6f}{r['rel_var']:>11.2e}{r['rel_is']:>11.2e}"
          f"{r['time']:>7.1f}s{r['step']:>7d}", flush=True)


def plot(rows: list[dict], args, path: Path) -> None:
    """Relative error of F_var (solid) and F_IS (dashed, |·|) vs β after the last step, one colour per net, log y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    for c, name in enumerate(args.nets):
        rs = [r for r in rows if r["net"] == name and r["step"] == args.steps]
        beta = np.array([r["beta"] for r in rs])
        rel = np.array([r["rel_var"] for r in rs])
        err = np.array([r["f_var_err"] / abs(r["exact"]) for r in rs])
        # F_var ≥ F up to Monte Carlo noise; plot |rel| with a floor so noise-level points stay visible.
        ax.errorbar(beta, np.maximum(np.abs(rel), 1e-8), yerr=err, marker="o", color=f"C{c}", capsize=3,
                    label=f"{name}: F_var")
        rel_is = np.array([abs(r["rel_is"]) for r in rs])
        ax.plot(beta, np.maximum(rel_is, 1e-8), ls="--", marker="x", color=f"C{c}", alpha=0.7, label=f"{name}: |F_IS|")
    if min(args.betas) < BETA_CRITICAL < max(args.betas):
        ax.axvline(BETA_CRITICAL, color="grey", lw=0.8, ls=":", label=r"$\beta_c$ (L=∞)")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel(r"relative error $(F - F_{\rm exact}) / |F_{\rm exact}|$")
    ax.set_title(f"{args.L}×{args.L} periodic Ising ferromagnet, {args.steps} steps × batch {args.batch_size}, Z₂")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in < 1 min: L=4, betas 0.3 0.44, 200 steps, batch 256, lr 1e-2, "
                             "mean field + MADE (overrides the options below)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the plot (default out/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--L", type=int, default=8, help="lattice side (VAN: 16)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.2, 0.44, 0.6, 1.0], help="inverse temperatures")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps per (β, net) (VAN: 10000)")
    parser.add_argument("--batch-size", type=int, default=500, help="samples per step (VAN: 1000)")
    parser.add_argument("--eval-samples", type=int, default=20_000, help="samples for the final estimate")
    parser.add_argument("--lr", type=float, default=1e-2,
                        help="Adam learning rate (default 1e-2 for the short CPU budget; VAN: 1e-3 over 10⁴ steps)")
    parser.add_argument("--anneal", default="auto", help="β-anneal factor a, 'auto' (see above) or 'none'")
    parser.add_argument("--nets", nargs="+", choices=NETS, default=["meanfield", "made"],
                        help="nets to compare (default meanfield made; pixelcnn is VAN's net, slow on CPU)")
    parser.add_argument("--eval-at", type=int, nargs="+", metavar="STEP",
                        help="also evaluate every net at these steps of its run (the last step always is)")
    parser.add_argument("--ladder", action="store_true",
                        help="train the betas in order as rungs of one run per net, --steps each, every rung starting "
                             "from the previous rung's net and Adam state (annealing, if any, runs once over the run)")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="resumable run: checkpoints and evaluated rows go to DIR; run the same command to resume")
    parser.add_argument("--progress", action="store_true", help="show a progress bar while training")
    args = parser.parse_args(argv)
    if args.quick:
        args.L, args.betas, args.steps, args.batch_size = 4, [0.3, 0.44], 200, 256
        args.eval_samples, args.lr, args.nets = 10_000, 1e-2, ["meanfield", "made"]
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    anneal = resolved_anneal(args)
    print(f"{args.L}×{args.L} periodic Ising ferromagnet (J=1), Z₂ symmetry, grad clip 1, Adam lr {args.lr:g}, "
          f"{args.steps} steps × batch {args.batch_size}, anneal {anneal}, "
          f"estimates from {args.eval_samples} samples; exact F from Kaufman's formula")
    print(HEADER)
    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ising_van_L{args.L}.png"
    plot(rows, args, path)
    print("rel F_var = (F_var - F)/|F| ≥ 0 up to noise (F_var is a variational upper bound); "
          "F_IS is the importance-weighted estimate.")
    print(f"plot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
