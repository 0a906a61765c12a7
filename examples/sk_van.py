"""Variational free energy of the Sherrington–Kirkpatrick spin glass by β-annealing (VAN's Fig. 4a).

VAN (Wu, Wang, Zhang, PRL 122, 080602 (2019); ``src_hop_sk/reproduce.sh``) trains one MADE on an
SK instance with N = 20 spins, J_ij ~ N(0, 1/N), at β = 0.1, 0.2, …, 5 in turn, each β continuing
from the net (and the Adam state) of the previous one:
``--net_depth 1 --net_width 1 --z2 --batch_size 10000 --lr 1e-3 --max_step 1000 --clip_grad 1``
(no ``--bias``). VAN's depth-1 MADE is a single exclusive masked linear map followed by a
sigmoid, i.e. autoregressive logistic regression: here ``arjax.nn.MADE(N, 2, depth=0)`` (which
has biases). The exact free energy comes from enumerating all 2^N states
(``target.exact_log_partition``, float64).

Budget. VAN runs 1000 steps × batch 10⁴ per β (5·10⁴ steps). The default here is
``--steps-per-beta 200 --batch-size 1000`` (10⁴ steps), which takes about a minute on a 2-core CPU;
pass ``--steps-per-beta 1000 --batch-size 10000`` for VAN's budget. The β loop uses
``arjax.objectives.free_energy_loss`` under one jitted ``lax.scan`` per β with β as a traced
argument, so the whole anneal compiles once (``arjax.train.fit_free_energy`` would recompile for
every β and reset Adam's moments, unlike VAN).

``--triangular`` adds the frustrated triangular antiferromagnet ``IsingTriangular(L, J=-1)`` at
large β (default β = 3, L = 4 and 6, MADE depth 2 width 4N, 1000 steps × batch 1000, lr 1e-2,
anneal 0.995; with lr 1e-3 and anneal 0.99 the L = 4 model collapsed onto a few of the 42 ground
states, S_q/N = 0.086 against 0.234): the model's entropy per site S_q/N = -E_q[ln q]/N against
the exact S(β)/N of the small lattice (enumeration: S = ln Z + β⟨E⟩, ⟨E⟩ = -d ln Z/dβ by a central
difference), its ground-state value ln g / N, and Wannier's N → ∞ residual entropy 0.3231 (VAN's Fig. 2b).

Run:
    python examples/sk_van.py --quick                  # < 1 min: N = 10, β = 0.5 … 2
    python examples/sk_van.py                          # N = 20, β = 0.1 … 5 (CPU budget)
    python examples/sk_van.py --triangular             # also the triangular antiferromagnet
"""

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from arjax.estimators import free_energy
from arjax.nn import MADE
from arjax.objectives import free_energy_loss
from arjax.targets import (
    WANNIER_RESIDUAL_ENTROPY,
    IsingTriangular,
    SherringtonKirkpatrick,
    ground_state_by_enumeration,
)
from arjax.train import fit_free_energy


def anneal_sk(target, net, betas, *, steps, batch_size, lr, eval_samples, key):
    """Train ``net`` at each β of ``betas`` in turn (carrying net and Adam state); one row per β."""
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_at(params, opt_state, key, beta):
        def step(carry, t):
            params, opt_state = carry
            grads = jax.grad(lambda p: free_energy_loss(eqx.combine(p, static), jax.random.fold_in(key, t), target,
                                                        beta, batch_size, symmetry="z2"))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
        return params, opt_state

    n = target.num_positions
    rows = []
    for i, beta in enumerate(betas):
        train_key, eval_key = jax.random.split(jax.random.fold_in(key, i))
        params, opt_state = train_at(params, opt_state, train_key, jnp.asarray(beta, jnp.float32))
        est = free_energy(eqx.combine(params, static), target, beta, eval_key, eval_samples, symmetry="z2").per_site(n)
        exact = -target.exact_log_partition(beta) / beta / n
        row = dict(beta=float(beta), f_var=float(est.variational), f_var_err=float(est.variational_stderr),
                   f_is=float(est.importance), f_is_err=float(est.importance_stderr), ess=float(est.ess),
                   exact=exact, entropy=float(est.entropy))
        row["rel_var"] = (row["f_var"] - exact) / abs(exact)
        row["rel_is"] = (row["f_is"] - exact) / abs(exact)
        rows.append(row)
        print(f"{beta:>6.2f}{row['f_var']:>12.6f}{row['f_var_err']:>9.1e}{row['f_is']:>12.6f}{row['f_is_err']:>9.1e}"
              f"{row['ess']:>9.0f}{exact:>12.6f}{row['rel_var']:>11.2e}{row['rel_is']:>11.2e}{row['entropy']:>8.4f}",
              flush=True)
    return rows


def exact_entropy_per_site(target, beta: float, h: float = 1e-4) -> float:
    """S(β)/N = [ln Z + β⟨E⟩]/N with ⟨E⟩ = -d ln Z/dβ by a central difference (enumeration, float64)."""
    log_z = target.exact_log_partition(beta)
    mean_energy = -(target.exact_log_partition(beta + h) - target.exact_log_partition(beta - h)) / (2 * h)
    return (log_z + beta * mean_energy) / target.num_positions


def triangular(args, key):
    """Entropy per site of the triangular antiferromagnet at large β, model vs exact."""
    print(f"\nTriangular Ising antiferromagnet (J=-1, periodic) at β={args.tri_beta}: MADE depth 2 width 4N, Z₂, "
          f"{args.tri_steps} steps × batch {args.tri_batch}, lr {args.tri_lr:g}, anneal {args.tri_anneal}")
    print(f"{'L':>3}{'S_q/N':>9}{'E_q/N':>9}{'F_var/N':>11}{'F_IS/N':>11}{'ESS':>8}"
          f"{'exact S/N':>11}{'exact F/N':>11}{'ln g/N':>9}{'Wannier':>9}")
    rows = []
    for L in args.tri_L:
        target = IsingTriangular(L, J=-1.0)
        n = target.num_positions
        init_key, fit_key, eval_key = jax.random.split(jax.random.fold_in(key, L), 3)
        net, _ = fit_free_energy(
            MADE(n, 2, depth=2, width=4 * n, key=init_key), target, args.tri_beta,
            optimizer=optax.adam(args.tri_lr), num_steps=args.tri_steps, batch_size=args.tri_batch, key=fit_key,
            anneal=args.tri_anneal, symmetry="z2", clip_grad=1.0, log_every=min(args.tri_steps, 100), progress=False,
        )
        est = free_energy(net, target, args.tri_beta, eval_key, args.eval_samples, symmetry="z2").per_site(n)
        row = dict(L=L, entropy=float(est.entropy), energy=float(est.energy), f_var=float(est.variational),
                   f_is=float(est.importance), ess=float(est.ess), exact_entropy=None, exact_f=None, ground=None)
        if n <= 24:
            row["exact_entropy"] = exact_entropy_per_site(target, args.tri_beta)
            row["exact_f"] = target.exact_free_energy(args.tri_beta) / n
            row["ground"] = np.log(ground_state_by_enumeration(target)[1]) / n
        rows.append(row)

        def fmt(v, w, p):
            return f"{'—':>{w}}" if v is None else f"{v:>{w}.{p}f}"

        print(f"{L:>3}{row['entropy']:>9.4f}{row['energy']:>9.4f}{row['f_var']:>11.5f}{row['f_is']:>11.5f}"
              f"{row['ess']:>8.0f}{fmt(row['exact_entropy'], 11, 4)}{fmt(row['exact_f'], 11, 5)}"
              f"{fmt(row['ground'], 9, 4)}{WANNIER_RESIDUAL_ENTROPY:>9.4f}", flush=True)
    print("S_q/N = -E_q[ln q]/N; exact S/N by enumeration (L ≤ 4) at the same β; ln g/N is the finite lattice's "
          "ground-state entropy (β → ∞); Wannier's value is the N → ∞ limit.")
    return rows


def plot(rows, tri_rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 3 if tri_rows else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 4.2), layout="constrained")
    beta = np.array([r["beta"] for r in rows])
    ax = axes[0]
    ax.plot(beta, [r["exact"] for r in rows], "k-", lw=1.5, label="exact (enumeration)")
    ax.errorbar(beta, [r["f_var"] for r in rows], yerr=[r["f_var_err"] for r in rows], fmt="o", ms=3,
                color="C0", label=r"$F_{\rm var}/N$ (MADE)")
    ax.plot(beta, [r["f_is"] for r in rows], "x", ms=4, color="C1", label=r"$F_{\rm IS}/N$")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel("free energy per site")
    ax.set_title(f"SK model, N={args.n}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.semilogy(beta, np.maximum(np.abs([r["rel_var"] for r in rows]), 1e-9), "o-", ms=3, color="C0",
                label=r"$|F_{\rm var} - F| / |F|$")
    ax.semilogy(beta, np.maximum(np.abs([r["rel_is"] for r in rows]), 1e-9), "x--", ms=4, color="C1",
                label=r"$|F_{\rm IS} - F| / |F|$")
    ax.set_xlabel(r"$\beta$")
    ax.set_ylabel("relative error")
    ax.set_title(f"{args.steps_per_beta} steps × batch {args.batch_size} per β")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if tri_rows:
        ax = axes[2]
        Ls = [r["L"] for r in tri_rows]
        ax.plot(Ls, [r["entropy"] for r in tri_rows], "o", color="C0", label=r"model $S_q/N$")
        exact = [(r["L"], r["exact_entropy"]) for r in tri_rows if r["exact_entropy"] is not None]
        if exact:
            ax.plot(*zip(*exact), "s", mfc="none", color="k", ms=9, label=r"exact $S/N$ (enumeration)")
        ax.axhline(WANNIER_RESIDUAL_ENTROPY, color="C3", ls="--", label="Wannier 0.3231 (N→∞)")
        ax.set_xticks(Ls)
        ax.set_xlabel("L")
        ax.set_ylabel("entropy per site")
        ax.set_title(f"triangular AFM at β={args.tri_beta}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in < 1 min: N=10, β = 0.5, 1, 1.5, 2, 100 steps × batch 1000 per β")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the plot (default out/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the couplings and of training")
    parser.add_argument("--n", type=int, default=20, help="number of SK spins (≤ 24 for the exact value)")
    parser.add_argument("--beta-min", type=float, default=0.1)
    parser.add_argument("--beta-max", type=float, default=5.0)
    parser.add_argument("--beta-step", type=float, default=0.1)
    parser.add_argument("--steps-per-beta", type=int, default=200, help="VAN: 1000")
    parser.add_argument("--batch-size", type=int, default=1000, help="VAN: 10000")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (VAN: 1e-3)")
    parser.add_argument("--eval-samples", type=int, default=20_000, help="samples for each final estimate")
    parser.add_argument("--triangular", action="store_true", help="also the triangular antiferromagnet section")
    parser.add_argument("--tri-L", type=int, nargs="+", default=[4, 6], help="triangular lattice sides")
    parser.add_argument("--tri-beta", type=float, default=3.0, help="β of the triangular section")
    parser.add_argument("--tri-steps", type=int, default=1000)
    parser.add_argument("--tri-batch", type=int, default=1000)
    parser.add_argument("--tri-lr", type=float, default=1e-2, help="Adam learning rate (VAN: 1e-3 over 10⁴ steps)")
    parser.add_argument("--tri-anneal", type=float, default=0.995, help="β-anneal factor (VAN: 0.998 over 10⁴ steps)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.beta_min, args.beta_max, args.beta_step = 10, 0.5, 2.0, 0.5
        args.steps_per_beta, args.batch_size, args.lr, args.eval_samples = 100, 1000, 1e-2, 10_000
        args.tri_L, args.tri_steps, args.tri_batch, args.tri_anneal = [4], 300, 500, 0.98
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    key = jax.random.key(args.seed)
    couplings_key, train_key, tri_key = jax.random.split(key, 3)
    target = SherringtonKirkpatrick(args.n, key=couplings_key)
    betas = np.round(np.arange(args.beta_min, args.beta_max + args.beta_step / 2, args.beta_step), 10)
    net = MADE(args.n, 2, depth=0, key=jax.random.fold_in(train_key, 0))
    print(f"SK model, N={args.n} (seed {args.seed}); MADE depth 0 (VAN's net_depth 1), Z₂, grad clip 1, "
          f"Adam lr {args.lr:g}; {args.steps_per_beta} steps × batch {args.batch_size} per β, β = "
          f"{betas[0]:g} … {betas[-1]:g} in {len(betas)} stages; estimates from {args.eval_samples} samples")
    print(f"{'beta':>6}{'F_var/N':>12}{'± err':>9}{'F_IS/N':>12}{'± err':>9}{'ESS':>9}{'exact F/N':>12}"
          f"{'rel F_var':>11}{'rel F_IS':>11}{'S_q/N':>8}")
    rows = anneal_sk(target, net, betas, steps=args.steps_per_beta, batch_size=args.batch_size, lr=args.lr,
                     eval_samples=args.eval_samples, key=jax.random.fold_in(train_key, 1))
    print(f"SK done in {time.perf_counter() - start:.1f}s")
    tri_rows = triangular(args, tri_key) if args.triangular else []
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sk_van_N{args.n}.png"
    plot(rows, tri_rows, args, path)
    print(f"plot: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
