"""The crystal examples run end to end with ``--quick``: ``crystals.py`` (a grammar-masked Transformer on
Perov-5, cloze MCMC and property conditioning by MCMC and RL), ``crystals_mp20.py`` (binned and
continuous models on the MP-20 subset and the continuous one fine-tuned toward validity, judged by
the metrics) and ``crystals_design.py`` (cloze and RL on the continuous model); every sample decodes,
and the printed numbers are consistent."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"(-?\d+(?:\.\d+)?)"


def number_after(stdout: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*" + NUMBER, stdout)
    assert match, f"{label!r} not found in:\n{stdout}"
    return float(match.group(1))


def test_crystals_quick_samples_valid_crystals_and_conditioning_moves_towards_the_target(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "crystals.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"crystals.py failed:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert (tmp_path / "crystals_heat_ref.png").stat().st_size > 10_000

    # The grammar mask makes every sample decode: prior, MCMC and RL samples alike.
    assert number_after(out, "valid (decode) =") == 100.0
    assert number_after(out, "MCMC samples: valid =") == 100.0
    assert number_after(out, "RL samples: valid =") == 100.0
    novelty = re.search(r"novelty\s+=\s+" + NUMBER + r"% \(token string[^)]*\), " + NUMBER + "%", out)
    assert novelty and 0.0 <= float(novelty.group(2)) <= float(novelty.group(1)) <= 100.0

    # A trained model: the test NLL (nats per crystal over 30 tokens) is far below that of a uniform
    # choice among the tokens the grammar allows (the elements alone cost 4-5 × ln 56 ≈ 20 nats).
    test_nll = number_after(out, "test NLL  =")
    assert 5.0 < test_nll < 30.0

    # Cloze MH: a proper acceptance rate and a total-variation distance to the exact conditional.
    assert 0.0 < number_after(out, "acceptance rate =") <= 1.0
    assert 0.0 <= number_after(out, "TV(chains, exact conditional) =") <= 1.0

    # The predictor beats predicting the training mean.
    rmse = number_after(out, "test RMSE =")
    baseline = number_after(out, "predicting the mean:")
    assert rmse < 0.8 * baseline

    # Conditioning: MCMC and the importance-sampling reference move the predicted property towards the target.
    target = 0.3
    rows = {name: [float(v) for v in re.search(re.escape(name) + r"[^\n]*?" + r"\s+".join([NUMBER] * 3) + "%",
                                               out).groups()]
            for name in ("prior samples", "posterior reference (IS)", "MCMC (", "RL (")}
    prior_gap = abs(rows["prior samples"][0] - target)
    assert abs(rows["posterior reference (IS)"][0] - target) < 0.5 * prior_gap
    assert abs(rows["MCMC ("][0] - target) < 0.5 * prior_gap
    assert rows["MCMC ("][2] > rows["prior samples"][2]
    assert 0.0 < number_after(out, "MCMC: acceptance rate =") < 1.0
    kl = re.search(r"KL\(q ‖ prior\) = " + NUMBER + r" ± " + NUMBER, out)
    assert kl and float(kl.group(1)) > -3 * float(kl.group(2))  # a KL, up to Monte Carlo error
    assert "plot:" in out


def test_crystals_mp20_quick_trains_the_models_and_reports_the_metrics(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "crystals_mp20.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"crystals_mp20.py failed:\n{proc.stdout}\n{proc.stderr}"
    results = {kind: json.loads((tmp_path / f"results-{kind}.json").read_text())["result"]
               for kind in ("binned", "continuous", "continuous+rl")}  # fmt: skip
    for kind, r in results.items():
        assert r["samples"] == 32
        # The grammar masks make every token sequence a crystal; only a cell whose sampled angles
        # describe no parallelepiped fails to become atoms (none in the measured run).
        assert r["decoded"] >= 0.9, kind
        assert 0.0 <= r["structural_validity"] <= 1.0
        assert 0.0 <= r["p1_fraction"] <= 1.0
        # A skeleton costs a few nats per token; even this briefly trained model is far below a
        # uniform choice among its ~180-410 tokens at each of ~20 skeleton positions.
        assert 5.0 < r["skeleton_nll"] < 20 * math.log(200), kind
    tuned = results["continuous+rl"]
    assert 0.0 <= tuned["rl_invalid_first"] <= 1.0 and 0.0 <= tuned["rl_invalid_last"] <= 1.0
    assert math.isfinite(tuned["rl_kl_last"])
    conditioned = json.loads((tmp_path / "results-conditioned.json").read_text())["result"]
    assert conditioned["samples"] == 32 and conditioned["structural_validity"] == 1.0  # exact rejection
    assert 0 < conditioned["accepted"] <= conditioned["drawn"] and conditioned["acceptance"] <= 1.0
    assert conditioned["full_nll"] == pytest.approx(results["continuous"]["full_nll"]
                                                    + math.log(conditioned["acceptance"]), rel=1e-9)  # fmt: skip
    table = proc.stdout[proc.stdout.index("test skeleton NLL"):]
    assert "structural validity" in table and "Wasserstein #elements" in table and "COV-R" in table


def test_crystals_design_quick_runs_cloze_and_rl_and_reports_before_and_after(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "crystals_design.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, f"crystals_design.py failed:\n{proc.stdout}\n{proc.stderr}"
    out = proc.stdout
    assert 0.0 < number_after(out, "MH sweeps, acceptance") <= 1.0
    assert 0.0 <= number_after(out, "completed crystals: structural validity") <= 100.0
    assert number_after(out, "test RMSE") > 0.0
    for name in ("before", "after"):
        row = re.search(rf"^\s+{name}\s+{NUMBER}%\s+{NUMBER}\s+{NUMBER}%", out, re.MULTILINE)
        assert row, out
        assert 0.0 <= float(row.group(1)) <= 100.0 and 0.0 <= float(row.group(3)) <= 100.0
