"""Counting n-queens solutions: effective samples per sample and per second, learned proposal vs Knuth.

For each ``n`` this trains (or loads, with ``--checkpoint``) the ``arjax.counting.QueensProposal``
of ``examples/nqueens_count.py`` (``--train-exact-rows`` exact rows while training) and then, for
``--seconds`` of wall time each, estimates the number of solutions with

- ``learned_exact{L}``: the trained table with the last ``L`` rows counted exactly
  (``QueensProposal.with_exact_rows(L)``) through ``arjax.estimators.count`` (jitted, 2^13
  samples per call), one entry per ``L`` of ``--exact-rows``;
- ``uniform_jax``: Knuth's estimator, ``QueensProposal.knuth(n)``, through the same code;
- ``knuth_numpy``: Knuth's estimator written directly in numpy with ``uint64`` bitmasks, which
  drops dead rollouts as it goes (the in-run baseline, as measured in the issue: 2·10⁷ rollouts
  in ~5 CPU-minutes at n = 22–26); it is 1.4-2.4x faster per rollout than ``uniform_jax`` here.

Each prints JSON lines ``ess_per_sample`` (ESS/M), ``ess_per_second`` (ESS over the sampling wall
time, compilation excluded), ``rel_stderr`` and ``z`` (against OEIS A000170) with the sample
count; ``learned_exact{L}_vs_{baseline}_*`` are the ratios against both baselines of the same run.

Measured on this 2-core CPU (``--seconds 30 --steps 150 --exact-rows 8,9``, with the checkpoints
of a first run whose training took 78 s at n = 20 and 114 s at n = 27; load average 0.8-1.3 at
n = 20, 3.3 at n = 27; log ``/work/runs/queens/s3/bench.jsonl``), learned vs ``knuth_numpy``:

    n    exact rows   ESS/M ratio   ESS/s ratio
    20   8            27.1          5.97
    20   9            44.3          4.56
    27   8            28.5          6.35
    27   9            46.7          7.06

Against ``uniform_jax`` the ESS/s ratios are larger (8.5 at n = 20, 17.2 at n = 27 with 8 exact
rows). ESS/M of Knuth's estimator: 0.0082 at n = 20, 0.0036 at n = 27. An earlier run under load
5-8 with ``--exact-rows 6,8,10`` gave 26.4 / 5.1 (n = 20) and 28.9 / 5.5 (n = 27) with 8 exact rows.

Run: python benchmarks/queens_count.py [--n 20,27] [--seconds 30] [--exact-rows 6,8,10] [--checkpoint DIR]
"""

import argparse
import math
import os
import time
from pathlib import Path

import jax
import numpy as np
import optax
from common import emit, emit_environment

from arjax.counting import QueensProposal
from arjax.estimators import count
from arjax.targets import NQueens
from arjax.train import fit_count


def knuth_numpy(n: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """Knuth's weights ``Π_i (free columns of row i)`` of ``num`` rollouts (0 for dead ends), float64."""
    full = np.uint64((1 << n) - 1)
    columns, down, up = (np.zeros(num, np.uint64) for _ in range(3))
    log_w, alive = np.zeros(num), np.arange(num)
    shifts = np.arange(n, dtype=np.uint64)
    for _ in range(n):
        free = ~(columns | down | up) & full
        degree = np.bitwise_count(free)
        keep = degree > 0
        alive, free, degree = alive[keep], free[keep], degree[keep]
        columns, down, up = columns[keep], down[keep], up[keep]
        log_w[alive] += np.log(degree)
        pick = (rng.random(alive.size) * degree).astype(np.int64)  # the pick-th free column, counted from 0
        bits = ((free[:, None] >> shifts) & np.uint64(1)).astype(np.int8)
        bit = np.uint64(1) << np.argmax(np.cumsum(bits, axis=1) > pick[:, None], axis=1).astype(np.uint64)
        columns, down, up = columns | bit, ((down | bit) << np.uint64(1)) & full, (up | bit) >> np.uint64(1)
    w = np.zeros(num)
    w[alive] = np.exp(log_w[alive])
    return w


def run_numpy(n: int, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    s1 = s2 = 0.0
    total = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        w = knuth_numpy(n, 2**16, rng)
        s1, s2, total = s1 + w.sum(), s2 + (w**2).sum(), total + w.size
    elapsed = time.perf_counter() - start
    mean = s1 / total
    stderr = math.sqrt(max(s2 / total - mean**2, 0.0) / total)
    return {"count": mean, "stderr": stderr, "ess": s1**2 / s2, "num": total, "seconds": elapsed}


def run_jax(proposal, n: int, seconds: float, seed: int, batch_size: int = 2**13) -> dict:
    is_valid = NQueens(n).is_valid
    count(proposal, is_valid, jax.random.key(seed), batch_size, batch_size=batch_size)  # compile
    start = time.perf_counter()
    pilot = count(proposal, is_valid, jax.random.key(seed + 1), 8 * batch_size, batch_size=batch_size)
    rate = pilot.num_samples / (time.perf_counter() - start)
    num = max(batch_size, int(rate * seconds) // batch_size * batch_size)
    start = time.perf_counter()
    est = count(proposal, is_valid, jax.random.key(seed + 2), num, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    return {"count": est.count, "stderr": est.count_stderr, "ess": est.ess, "num": num, "seconds": elapsed}


def trained_proposal(n: int, args) -> QueensProposal:
    """The example's proposal and schedule; resumed (so returned at once) from ``--checkpoint`` when it is there."""
    q = QueensProposal(n, horizon=min(args.horizon, n - 1), exact_rows=min(args.train_exact_rows, n))
    path = None if args.checkpoint is None else args.checkpoint / f"proposal_n{n}_seed0.ckpt"
    loaded = path is not None and path.exists()
    start = time.perf_counter()
    key = jax.random.split(jax.random.fold_in(jax.random.key(0), n), 3)[0]  # the example's training key, seed 0
    q, _ = fit_count(q, NQueens(n).is_valid, divergence="chi2", optimizer=optax.adam(0.01), num_steps=args.steps,
                     batch_size=4096, key=key, checkpoint=path, log_every=50, progress=False)  # fmt: skip
    emit(f"queens_count/n{n}/train_seconds", time.perf_counter() - start, "s", steps=args.steps,
         train_exact_rows=q.exact_rows, horizon=q.horizon, loaded=loaded)  # fmt: skip
    return q


def ratio(ours: dict, base: dict, per: str) -> float:
    return (ours["ess"] / ours[per]) / (base["ess"] / base[per])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="20,27")
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling wall time per proposal and n")
    parser.add_argument("--steps", type=int, default=400, help="training steps (the example's default)")
    parser.add_argument("--horizon", type=int, default=6, help="look-ahead rows of the learned proposal")
    parser.add_argument("--train-exact-rows", type=int, default=3, help="exact rows while training")
    parser.add_argument("--exact-rows", default="3,8,10", help="exact rows while sampling, comma-separated")
    parser.add_argument("--checkpoint", type=Path, default=None, help="directory of the training checkpoints")
    args = parser.parse_args()
    emit_environment()
    for n in [int(v) for v in args.n.split(",")]:
        exact = NQueens(n).known_solution_count
        trained = trained_proposal(n, args)
        results = {"knuth_numpy": run_numpy(n, args.seconds, seed=n),
                   "uniform_jax": run_jax(QueensProposal.knuth(n), n, args.seconds, seed=n)}  # fmt: skip
        for rows in [min(int(v), n) for v in args.exact_rows.split(",")]:
            results[f"learned_exact{rows}"] = run_jax(trained.with_exact_rows(rows), n, args.seconds, seed=n)
        emit("load_average_1min", os.getloadavg()[0], "processes", n=n)
        for name, r in results.items():
            extra = {"n": n, "samples": r["num"], "seconds": round(r["seconds"], 1)}
            emit(f"queens_count/n{n}/{name}/ess_per_sample", r["ess"] / r["num"], "1", **extra)
            emit(f"queens_count/n{n}/{name}/ess_per_second", r["ess"] / r["seconds"], "1/s", **extra)
            emit(f"queens_count/n{n}/{name}/rel_stderr", r["stderr"] / r["count"], "1", **extra)
            if exact:
                emit(f"queens_count/n{n}/{name}/z", (r["count"] - exact) / r["stderr"], "sigma", **extra)
        for name in [k for k in results if k.startswith("learned")]:
            for base in ("knuth_numpy", "uniform_jax"):
                for per, label in (("num", "ess_per_sample"), ("seconds", "ess_per_second")):
                    emit(f"queens_count/n{n}/{name}_vs_{base}_{label}", ratio(results[name], results[base], per), "x",
                         n=n, baseline=base)  # fmt: skip


if __name__ == "__main__":
    main()
