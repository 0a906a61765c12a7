"""The maximum-likelihood examples run end to end (``--quick``), and the random-circuit simulator
they share agrees with explicit Kronecker-product matrices and with the Porter–Thomas statistics."""

import re
import subprocess
import sys
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import circuits  # noqa: E402

NUMBER = r"(-?\d+\.\d+(?:e[-+]\d+)?)"
I2 = np.eye(2)


def run_example(script: str, out: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def full_matrix(gate: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """The 2ⁿ × 2ⁿ matrix of a gate on adjacent ascending qubits, by Kronecker products (qubit 0 leftmost)."""
    assert list(qubits) == list(range(qubits[0], qubits[0] + len(qubits)))
    return reduce(np.kron, [I2] * qubits[0] + [gate] + [I2] * (n - qubits[-1] - 1))


# ------------------------------------------------------------------------------------- simulator


@pytest.mark.parametrize("n, depth", [(2, 4), (3, 5)])
def test_line_circuit_state_equals_product_of_kronecker_matrices(n, depth):
    circuit = circuits.random_circuit(n, depth, np.random.default_rng(n), layout="line")
    unitary = np.eye(2**n)
    for gate, qubits in circuit:
        unitary = full_matrix(gate, qubits, n) @ unitary
    assert np.allclose(circuits.simulate(circuit, n), unitary[:, 0], atol=1e-12)


def test_two_qubit_gate_on_reversed_qubits_uses_the_swapped_matrix():
    swap = np.eye(4)[[0, 2, 1, 3]]
    gate = circuits.fsim(0.3, 0.7) @ np.kron(circuits.SQRT_X, circuits.SQRT_W)  # not symmetric under swap
    psi = np.random.default_rng(0).normal(size=4) + 1j * np.random.default_rng(1).normal(size=4)
    out = circuits.apply_gate(psi.reshape(2, 2), gate, (1, 0)).reshape(-1)
    assert np.allclose(out, swap @ gate @ swap @ psi, atol=1e-12)


def test_gates_are_square_roots_of_x_y_w_and_fsim_is_unitary():
    x, y = np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]])
    for root, pauli in [(circuits.SQRT_X, x), (circuits.SQRT_Y, y), (circuits.SQRT_W, (x + y) / np.sqrt(2))]:
        assert np.allclose(root @ root, -1j * pauli)  # e^{-iπ/4 G} squared = e^{-iπ/2 G} = -iG
    f = circuits.fsim(np.pi / 2, np.pi / 6)
    assert np.allclose(f @ f.conj().T, np.eye(4))
    assert np.allclose(f[1:3, 1:3], [[0, -1j], [-1j, 0]]) and np.isclose(f[3, 3], np.exp(-1j * np.pi / 6))


def test_no_single_qubit_gate_repeats_on_a_qubit():
    n = 6
    circuit = circuits.random_circuit(n, 12, np.random.default_rng(3), layout="grid", cols=3)
    singles = [(q[0], id(g)) for g, q in circuit if len(q) == 1]
    for q in range(n):
        sequence = [g for qq, g in singles if qq == q]
        assert len(sequence) == 13 and all(a != b for a, b in zip(sequence, sequence[1:]))


@pytest.mark.parametrize("layout, cols", [("line", None), ("grid", 3)])
def test_output_distribution_is_normalised_and_porter_thomas(layout, cols):
    n = 9
    p = circuits.circuit_distribution(n, 16, 0, layout=layout, cols=cols)
    raw = np.abs(circuits.simulate(circuits.random_circuit(n, 16, np.random.default_rng(0), layout=layout,
                                                           cols=cols), n)) ** 2  # fmt: skip
    assert raw.sum() == pytest.approx(1.0, abs=1e-12)
    # Porter–Thomas: 2ⁿ p ~ Exp(1), so E[(2ⁿ p)²] = 2 and the entropy is n ln 2 - (1 - γ), up to
    # fluctuations of order 2^{-n/2}.
    assert 2**n * np.sum(p**2) == pytest.approx(2.0, abs=0.25)
    assert -np.sum(p * np.log(p)) == pytest.approx(circuits.porter_thomas_entropy(n), abs=0.05)


def test_bitstring_index_order_is_lexicographic_qubit_zero_first():
    bits = circuits.to_bitstrings(np.arange(8), 3)
    assert bits.tolist() == [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    assert circuits.to_index(bits).tolist() == list(range(8))


def test_linear_xeb_of_exact_samples_matches_the_analytic_value():
    n, m = 8, 200_000
    p = circuits.circuit_distribution(n, 12, 1, layout="line")
    bits = circuits.sample_bitstrings(p, m, np.random.default_rng(0))
    analytic = 2**n * np.sum(p**2) - 1
    # Standard error of 2ⁿ mean p(x) over exact samples: 2ⁿ sqrt(Σp³ - (Σp²)²) / sqrt(M).
    stderr = 2**n * np.sqrt(np.sum(p**3) - np.sum(p**2) ** 2) / np.sqrt(m)
    assert circuits.linear_xeb(p, bits) == pytest.approx(analytic, abs=5 * stderr)
    uniform = circuits.to_bitstrings(np.random.default_rng(1).integers(2**n, size=m), n)
    assert abs(circuits.linear_xeb(p, uniform)) < 5 * 2**n * np.std(p) / np.sqrt(m)


def test_kl_divergence_matches_direct_sum_and_is_infinite_off_support():
    p, q = np.array([0.5, 0.25, 0.25, 0.0]), np.array([0.25, 0.25, 0.25, 0.25])
    assert circuits.kl_divergence(p, q) == pytest.approx(0.5 * np.log(2))
    assert circuits.kl_divergence(q, p) == np.inf


# ------------------------------------------------------------------------------------- examples


@pytest.mark.slow  # three nets on digits; fit_mle and evaluate_nll are covered by test_mle
def test_digits_quick_prints_three_test_nlls_and_the_autoregressive_nets_beat_mean_field(tmp_path):
    stdout = run_example("digits.py", tmp_path)
    assert (tmp_path / "digits_samples.png").stat().st_size > 10_000
    rows = {line.split()[0]: line.split() for line in stdout.splitlines()
            if re.match(rf"^(meanfield|made|pixelcnn)\s+\d+\s+{NUMBER}", line)}  # fmt: skip
    assert set(rows) == {"meanfield", "made", "pixelcnn"}
    test_nll = {name: float(r[2]) for name, r in rows.items()}
    # Measured with --quick (seed 0): mean field 33.8, MADE 21.7, PixelCNN 20.8 nats per image.
    assert all(0 < v < 64 * np.log(2) for v in test_nll.values())
    assert test_nll["made"] < test_nll["meanfield"] - 5 and test_nll["pixelcnn"] < test_nll["meanfield"] - 5


@pytest.mark.slow  # the circuit simulator and KL/XEB are checked exactly by the fast tests above
def test_quantum_bitstrings_quick_reports_kl_and_xeb_against_the_exact_distribution(tmp_path):
    stdout = run_example("quantum_bitstrings.py", tmp_path)
    assert (tmp_path / "quantum_bitstrings_n8.png").stat().st_size > 10_000
    header = re.search(rf"H\(p\) = {NUMBER}.*KL\(p‖uniform\) = {NUMBER}, ideal F_XEB = .* = {NUMBER}", stdout)
    entropy, kl_uniform, ideal_xeb = (float(g) for g in header.groups())
    p = circuits.circuit_distribution(8, 8, 0, layout="grid", cols=4)  # the --quick circuit
    assert entropy == pytest.approx(-np.sum(p * np.log(p)), abs=1e-4)
    assert kl_uniform == pytest.approx(8 * np.log(2) - entropy, abs=1e-4)
    assert ideal_xeb == pytest.approx(2**8 * np.sum(p**2) - 1, abs=1e-4)
    model = [line.split() for line in stdout.splitlines() if re.match(r"^\s*\d+\s+model\s", line)]
    data = [line.split() for line in stdout.splitlines() if re.match(r"^\s*\d+\s+data\s", line)]
    assert model and len(model) == len(data)
    for m, d in zip(model, data):
        kl, xeb, xeb_exact, nll = (float(v) for v in m[2:6])
        assert 0 <= kl < kl_uniform + 0.05  # a barely trained net is close to uniform, not worse
        assert nll > entropy - 0.3  # held-out NLL estimates H(p) + KL ≥ H(p), up to sampling noise
        assert abs(xeb - xeb_exact) < 0.1
        assert float(d[3]) == pytest.approx(ideal_xeb, abs=0.3)  # the data are exact samples


@pytest.mark.slow  # five model sizes; fit_mle and evaluate_nll are covered by test_mle
def test_scaling_quick_fits_a_power_law_and_prints_the_entropy_floor(tmp_path):
    stdout = run_example("scaling.py", tmp_path)
    assert (tmp_path / "scaling_circuit.png").stat().st_size > 10_000
    rows = [line.split() for line in stdout.splitlines() if re.match(rf"^\s*\d+\s+\d+\s+{NUMBER}", line)]
    assert len(rows) == 5
    floor = float(re.search(rf"floor H\(p_true\) = {NUMBER}", stdout).group(1))
    p = circuits.circuit_distribution(6, 8, 0, layout="line")  # the --quick circuit
    assert floor == pytest.approx(-np.sum(p * np.log(p)), abs=1e-4)
    for r in rows:
        assert float(r[2]) > floor - 0.2  # test NLL ≥ H(p) up to the noise of 1000 test bitstrings
    assert "fit L(P)" in stdout or "power-law fit failed" in stdout
