"""``examples/crystals.py --quick`` runs end to end: a grammar-masked Transformer on Perov-5, cloze MCMC
and property conditioning by MCMC and RL; every sample decodes, and the printed numbers are consistent."""

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


@pytest.mark.slow  # the binned pipeline end to end; its pieces are tested in test_crystal and docs/crystals.md
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
