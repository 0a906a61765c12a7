"""``examples/posterior_conditioning.py --quick`` runs end to end, its printed exact posterior marginals
agree with an independent numpy enumeration, and every MCMC sampler's marginals are close to them."""

import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "posterior_conditioning.py"
SAMPLERS = ("independence", "cloze_gibbs", "numpyro_cloze")
N = 12
NUMBER = r"-?\d+\.\d+"


def run_quick(out: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"posterior_conditioning.py failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def marginal_table(stdout: str) -> np.ndarray:
    """Rows ``site, prior, exact, independence, cloze_gibbs, numpyro_cloze`` of the printed table."""
    pattern = r"^\s*(\d+)" + rf"\s+({NUMBER})" * 5 + r"\s*$"
    rows = [[float(v) for v in m.groups()] for line in stdout.splitlines() if (m := re.match(pattern, line))]
    return np.array(rows)


def sampler_rows(stdout: str) -> dict[str, list[float]]:
    """``{sampler: [acceptance, max |err|, mean |err|]}`` from the printed summary."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in SAMPLERS and len(parts) == 5:
            rows[parts[0]] = [float(v) for v in parts[1:4]]
    return rows


def markov_chain_log_probs(xs: np.ndarray, stay: float) -> np.ndarray:
    same = xs[:, 1:] == xs[:, :-1]
    return np.log(0.5) + np.sum(np.where(same, np.log(stay), np.log(1 - stay)), axis=1)


@pytest.mark.slow  # the posteriors docs page runs the same samplers against enumeration
def test_posterior_conditioning_quick_matches_enumeration(tmp_path):
    stdout = run_quick(tmp_path)
    assert (tmp_path / f"posterior_conditioning_N{N}.png").stat().st_size > 10_000
    saved = np.load(tmp_path / f"posterior_conditioning_N{N}.npz")

    # Independent enumeration in float64 numpy: itertools order, Gaussian likelihood written out.
    xs = np.array(list(itertools.product([0, 1], repeat=N)), np.float64)
    log_prior = saved["log_prior"].astype(np.float64)
    assert log_prior.shape == (2**N,)
    assert abs(logsumexp(log_prior)) < 1e-4  # the fitted Autoregressive prior is normalised
    residual = saved["y"][None, :] - xs @ saved["A"].T
    log_lik = -0.5 * np.sum(residual**2, axis=1) / float(saved["noise"]) ** 2
    post = np.exp(log_prior + log_lik - logsumexp(log_prior + log_lik))
    prior = np.exp(log_prior)
    # The prior was fitted to a Markov chain with stay 0.8: it should be close to it in total variation.
    generator = np.exp(markov_chain_log_probs(xs.astype(int), 0.8))
    assert 0.5 * np.abs(prior - generator).sum() < 0.2

    table = marginal_table(stdout)
    assert table.shape == (N, 6)
    assert table[:, 0].tolist() == list(range(N))
    np.testing.assert_allclose(table[:, 1], prior @ xs, atol=2e-4)
    np.testing.assert_allclose(table[:, 2], post @ xs, atol=2e-4)
    # The measurements move the marginals far more than the Monte Carlo error allowed below.
    assert np.max(np.abs(table[:, 2] - table[:, 1])) > 0.15

    rows = sampler_rows(stdout)
    assert set(rows) == set(SAMPLERS)
    for column, name in enumerate(SAMPLERS, start=3):
        error = np.abs(table[:, column] - post @ xs)
        # Measured with --quick (seed 0): max |err| 0.028 (independence), 0.014 (cloze), 0.015 (numpyro).
        assert error.max() < 0.05, (name, error.max())
        assert abs(rows[name][1] - error.max()) < 1e-3  # the printed max |err| is the table's
    assert 0.1 < rows["independence"][0] < 1.0  # acceptance rate of independence MH with the prior as proposal
    assert rows["cloze_gibbs"][0] == 1.0

    # print_summary of the NumPyro ClozeKernel run: one line per site, r_hat near 1.
    summary = [line.split() for line in stdout.splitlines() if re.match(r"^\s*x\[\d+\]\s", line)]
    assert len(summary) == N
    assert all(abs(float(r[-1]) - 1.0) < 0.05 for r in summary)
