"""The VAN examples run end to end (``--quick``), write their plots, and print numbers that match
brute-force enumeration of the same models."""

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from arjax.targets import SherringtonKirkpatrick

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"(-?\d+\.\d+(?:e[-+]\d+)?)"


def run_example(script: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def all_spins(n: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def square_ising_free_energy_per_site(L: int, beta: float) -> float:
    """-ln Z / (β N) of the L×L periodic ferromagnet (J = 1) by summing over all 2^(L²) states."""
    s = all_spins(L * L).reshape(-1, L, L)
    energy = -np.sum(s * np.roll(s, -1, axis=1) + s * np.roll(s, -1, axis=2), axis=(1, 2))
    return -logsumexp(-beta * energy) / beta / (L * L)


def table_rows(stdout: str, first_column: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if re.match(rf"^\s*{first_column}\s+{NUMBER}", line)]


@pytest.mark.slow  # VAN training against exact free energies is tested in test_train and test_free_energy
def test_ising_van_quick_beats_mean_field_and_bounds_exact_free_energy(tmp_path):
    stdout = run_example("ising_van.py", tmp_path)
    assert (tmp_path / "ising_van_L4.png").stat().st_size > 10_000
    rows = {(r[0], float(r[1])): r for r in table_rows(stdout, "(?:meanfield|made)")}
    assert set(rows) == {(net, beta) for net in ("meanfield", "made") for beta in (0.3, 0.44)}
    for (net, beta), r in rows.items():
        f_var, f_var_err, f_is, exact = float(r[2]), float(r[3]), float(r[4]), float(r[7])
        truth = square_ising_free_energy_per_site(4, beta)
        assert exact == pytest.approx(truth, abs=2e-6)  # the printed exact column (Kaufman) vs enumeration
        rel = (f_var - truth) / abs(truth)
        assert f_var >= truth - 4 * f_var_err  # variational upper bound, up to Monte Carlo noise
        # Measured with --quick (seed 0): MADE rel F_var 2e-4 … 3e-4, |rel F_IS| ≤ 6e-5; mean field
        # rel F_var 1.6e-2 … 4.9e-2, |rel F_IS| ≤ 4e-3; bounds with margin.
        assert rel < (3e-3 if net == "made" else 0.2), (net, beta, rel)
        assert abs(f_is - truth) / abs(truth) < (2e-3 if net == "made" else 2e-2)
    for beta in (0.3, 0.44):
        assert float(rows[("made", beta)][2]) < float(rows[("meanfield", beta)][2])


@pytest.mark.slow  # resumption is checked bit for bit by test_train and test_mle
def test_ising_van_evaluates_at_chosen_steps_and_a_resumed_run_prints_the_uninterrupted_rows(tmp_path, capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import ising_van
    finally:
        sys.path.remove(str(EXAMPLES))
    common = ["--L", "3", "--betas", "0.44", "--batch-size", "64", "--eval-samples", "512", "--nets", "made",
              "--anneal", "none", "--lr", "1e-2", "--out", str(tmp_path)]

    def rows(argv):
        ising_van.main(common + argv)
        return [r[:-2] + r[-1:] for r in table_rows(capsys.readouterr().out, "made")]  # all but the time column

    uninterrupted = rows(["--steps", "40", "--eval-at", "20"])
    assert [r[-1] for r in uninterrupted] == ["20", "40"]
    truth = square_ising_free_energy_per_site(3, 0.44)
    f_var = [float(r[2]) for r in uninterrupted]
    assert truth < f_var[1] < f_var[0]  # a valid bound that tightens with training
    checkpoint = ["--checkpoint", str(tmp_path / "run")]
    assert rows(["--steps", "20"] + checkpoint) == uninterrupted[:1]  # the run stops at step 20 ...
    assert rows(["--steps", "40", "--eval-at", "20"] + checkpoint) == uninterrupted  # ... and resumes to 40
    assert len((tmp_path / "run" / "rows.jsonl").read_text().splitlines()) == 2
    with pytest.raises(SystemExit, match="--eval-at"):
        ising_van.main(common + ["--steps", "40", "--eval-at", "50"])
    # A ladder β = 0.3 → 0.44 of 20 steps each: its second rung starts from the first rung's net and Adam
    # state, so after 20 steps at β = 0.44 it is closer to F than the run that started there.
    ladder = rows(["--steps", "20", "--betas", "0.3", "0.44", "--ladder"])
    assert [(r[1], r[-1]) for r in ladder] == [("0.3", "20"), ("0.44", "20")]
    assert truth < float(ladder[1][2]) < f_var[0]


@pytest.mark.slow  # the SK target is checked against enumeration in test_targets
def test_sk_van_quick_tracks_exact_free_energy_of_the_instance(tmp_path):
    stdout = run_example("sk_van.py", tmp_path)
    assert (tmp_path / "sk_van_N10.png").stat().st_size > 10_000
    rows = table_rows(stdout, "")
    assert [float(r[0]) for r in rows] == [0.5, 1.0, 1.5, 2.0]
    # The same instance as the example: couplings from the first of three keys split from the seed 0.
    couplings = np.asarray(SherringtonKirkpatrick(10, key=jax.random.split(jax.random.key(0), 3)[0]).couplings,
                           np.float64)
    s = all_spins(10)
    energy = -0.5 * np.einsum("bi,ij,bj->b", s, couplings, s)
    for r in rows:
        beta, f_var, f_var_err, f_is, exact = (float(r[i]) for i in (0, 1, 2, 3, 6))
        truth = -logsumexp(-beta * energy) / beta / 10
        assert exact == pytest.approx(truth, abs=1e-5)
        assert f_var >= truth - 4 * f_var_err
        # Measured with --quick (seed 0): rel F_var 4e-4 … 2e-3, rel F_IS ≤ 2e-4; bounds with margin.
        assert (f_var - truth) / abs(truth) < 1e-2
        assert abs(f_is - truth) / abs(truth) < 2e-3


@pytest.mark.slow  # the queens paths run in test_queens, test_counting and the nqueens_count example
def test_nqueens_quick_finds_every_solution_of_the_six_queens_problem(tmp_path):
    stdout = run_example("nqueens.py", tmp_path)
    assert (tmp_path / "nqueens_n6.png").stat().st_size > 10_000
    found = re.search(r"distinct solutions in the final \d+ samples: (\d+) of (\d+)", stdout)
    assert found, stdout
    assert int(found.group(2)) == 4  # OEIS A000170: the 6-queens problem has 4 solutions
    assert int(found.group(1)) == 4


def test_nqueens_count_quick_estimates_the_92_solutions_of_eight_queens_within_their_error_bars(tmp_path):
    stdout = run_example("nqueens_count.py", tmp_path)
    assert (tmp_path / "nqueens_count.png").stat().st_size > 10_000
    rows = {r[1]: r for r in (line.split() for line in stdout.splitlines()) if r and r[0] == "8"}
    assert set(rows) == {"learned", "uniform"}, stdout
    for name, r in rows.items():
        estimate, rel, exact, z = float(r[2]), float(r[3]), int(r[4]), float(r[5])
        assert exact == 92  # OEIS A000170
        assert abs(estimate - 92) < 4 * rel * estimate, (name, r)
        assert z == pytest.approx((estimate - 92) / (rel * estimate), abs=0.02)
    # Measured with --quick (seed 0): ESS/M 0.27 learned, 0.10 uniform (Knuth).
    assert float(rows["learned"][6]) > float(rows["uniform"][6])
    saved = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert {r["proposal"] for r in saved} == {"learned", "uniform"}

    # --plot-rows: the rows of earlier runs together; seeds of a size without an exact count are
    # pooled by inverse variance (here 100 ± 1 and 103 ± 2: 100.6 ± 0.894, χ² = 1.8 for 1 dof).
    seeds = [{**saved[0], "n": 40, "seed": s, "count": c, "rel_stderr": e / c, "exact": None, "z": float("nan")}
             for s, c, e in ((1, 100.0, 1.0), (2, 103.0, 2.0))]  # fmt: skip
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    replot = tmp_path / "replot"
    command = [sys.executable, str(EXAMPLES / "nqueens_count.py"), "--out", str(replot),
               "--plot-rows", str(tmp_path / "rows.jsonl"), str(tmp_path / "seeds.jsonl")]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "n = 40: 2 seeds, pooled 100.6 ± 0.889%, agreement χ² = 1.80 for 1 degrees of freedom" in proc.stdout
    assert (replot / "nqueens_count.png").stat().st_size > 10_000
