"""Random quantum circuits of the Sycamore supremacy experiment, simulated exactly with a numpy state vector.

Arute et al., Nature 574, 505 (2019): each cycle applies one single-qubit gate to every qubit,
drawn from {√X, √Y, √W} (W = (X + Y)/√2) and never the same gate twice in a row on a qubit, then
fSim(θ, φ) couplers on one of four patterns of nearest-neighbour pairs (A, B, C, D, in the order
ABCDCDAB); a last layer of single-qubit gates precedes the measurement in the computational basis.
Here the qubits sit on a line (two patterns, even and odd bonds, alternating) or on a rows × cols
grid (A/B: horizontal bonds starting at even/odd columns, C/D: vertical bonds starting at even/odd
rows), with Sycamore's fSim(π/2, π/6) by default. After enough cycles the output probabilities
p(x) = |⟨x|Ψ⟩|² follow the Porter–Thomas law: 2ⁿ p is exponentially distributed, so the entropy
is n ln 2 - (1 - γ) and the ideal linear cross-entropy benchmark (XEB) 2ⁿ Σ_x p(x)² - 1 is ≈ 1.

This module depends on numpy only, so it can be checked apart from arjax (tests/test_mle_examples.py)
and imported by examples/quantum_bitstrings.py, examples/scaling.py and benchmarks/mle.py.

Conventions: qubit 0 is the most significant bit of a basis-state index, so the bitstring
``x[0..n-1]`` has index Σ_i x_i 2^{n-1-i}, which is the lexicographic order of
``arjax.testing.all_sequences(n, 2)``.
"""

import numpy as np

__all__ = [
    "SQRT_X", "SQRT_Y", "SQRT_W", "fsim", "random_circuit", "apply_gate", "simulate", "probabilities",
    "sample_bitstrings", "to_index", "to_bitstrings", "linear_xeb", "kl_divergence", "porter_thomas_entropy",
    "circuit_distribution", "coupler_patterns",
]  # fmt: skip

_X = np.array([[0, 1], [1, 0]], complex)
_Y = np.array([[0, -1j], [1j, 0]], complex)
_W = (_X + _Y) / np.sqrt(2)


def _half_turn(generator: np.ndarray) -> np.ndarray:
    """exp(-i π/4 G) = (I - iG)/√2 for an involution G (G² = I): the square root of G up to phase."""
    return (np.eye(2) - 1j * generator) / np.sqrt(2)


SQRT_X = _half_turn(_X)
SQRT_Y = _half_turn(_Y)
SQRT_W = _half_turn(_W)
SINGLE_QUBIT_GATES = (SQRT_X, SQRT_Y, SQRT_W)


def fsim(theta: float = np.pi / 2, phi: float = np.pi / 6) -> np.ndarray:
    """The fSim(θ, φ) coupler in the basis |00⟩, |01⟩, |10⟩, |11⟩: an iSWAP-like rotation by θ in the
    one-excitation subspace and a conditional phase e^{-iφ} on |11⟩ (θ = π/2, φ = π/6 on Sycamore)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[1, 0, 0, 0], [0, c, -1j * s, 0], [0, -1j * s, c, 0], [0, 0, 0, np.exp(-1j * phi)]])


def coupler_patterns(n: int, layout: str = "line", cols: int | None = None) -> list[list[tuple[int, int]]]:
    """Disjoint sets of nearest-neighbour pairs, applied in turn (one set per cycle).

    ``line``: [even bonds, odd bonds]. ``grid`` (``cols`` columns, row-major qubit numbering):
    Sycamore's order A B C D C D A B of A/B horizontal and C/D vertical bond sets.
    """
    if layout == "line":
        return [[(i, i + 1) for i in range(start, n - 1, 2)] for start in (0, 1)]
    if layout != "grid":
        raise ValueError(f"layout must be 'line' or 'grid', got {layout!r}")
    if cols is None or cols < 2 or n % cols or n // cols < 2:
        raise ValueError(f"a grid needs cols ≥ 2 dividing n into ≥ 2 rows, got n={n}, cols={cols}")
    rows = n // cols
    a, b = ([(r * cols + j, r * cols + j + 1) for r in range(rows) for j in range(start, cols - 1, 2)]
            for start in (0, 1))  # fmt: skip
    c, d = ([(r * cols + j, (r + 1) * cols + j) for r in range(start, rows - 1, 2) for j in range(cols)]
            for start in (0, 1))  # fmt: skip
    return [a, b, c, d, c, d, a, b]


def random_circuit(
    n: int, depth: int, rng: np.random.Generator, *, layout: str = "line", cols: int | None = None,
    theta: float = np.pi / 2, phi: float = np.pi / 6,
) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """A Sycamore-style random circuit: ``depth`` cycles of single-qubit gates + couplers, then a
    final layer of single-qubit gates. Returns ``[(unitary, qubits), ...]`` in the order applied."""
    patterns = coupler_patterns(n, layout, cols)
    coupler = fsim(theta, phi)
    previous = np.full(n, -1)
    ops = []
    for cycle in range(depth + 1):
        for q in range(n):
            choices = [g for g in range(3) if g != previous[q]]
            previous[q] = choices[rng.integers(len(choices))]
            ops.append((SINGLE_QUBIT_GATES[previous[q]], (q,)))
        if cycle < depth:
            ops.extend((coupler, pair) for pair in patterns[cycle % len(patterns)])
    return ops


def apply_gate(state: np.ndarray, gate: np.ndarray, qubits: tuple[int, ...]) -> np.ndarray:
    """Apply a ``2^k × 2^k`` unitary to ``qubits`` of a state tensor of shape ``(2,) * n``."""
    k = len(qubits)
    tensor = gate.reshape((2,) * (2 * k))
    out = np.tensordot(tensor, state, axes=(list(range(k, 2 * k)), list(qubits)))
    return np.moveaxis(out, list(range(k)), list(qubits))


def simulate(circuit, n: int) -> np.ndarray:
    """Amplitudes ⟨x|Ψ⟩ of the circuit applied to |0…0⟩, a complex vector of length 2ⁿ (index order above)."""
    state = np.zeros((2,) * n, complex)
    state[(0,) * n] = 1.0
    for gate, qubits in circuit:
        state = apply_gate(state, gate, qubits)
    return state.reshape(-1)


def probabilities(circuit, n: int) -> np.ndarray:
    """|⟨x|Ψ⟩|², renormalised against float rounding."""
    p = np.abs(simulate(circuit, n)) ** 2
    return p / p.sum()


def circuit_distribution(n: int, depth: int, seed: int, *, layout: str = "line", cols: int | None = None):
    """The exact output distribution (length 2ⁿ) of the random circuit drawn from ``seed``."""
    return probabilities(random_circuit(n, depth, np.random.default_rng(seed), layout=layout, cols=cols), n)


def to_bitstrings(index: np.ndarray, n: int) -> np.ndarray:
    """Basis-state indices → bitstrings ``[..., n]`` (int32), qubit 0 first (most significant)."""
    index = np.asarray(index)
    return ((index[..., None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.int32)


def to_index(bits: np.ndarray) -> np.ndarray:
    """Bitstrings ``[..., n]`` → basis-state indices."""
    bits = np.asarray(bits, np.int64)
    return bits @ (1 << np.arange(bits.shape[-1] - 1, -1, -1))


def sample_bitstrings(p: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` independent measurements of the state: bitstrings ``[M, n]`` drawn from ``p``."""
    n = int(np.log2(len(p)))
    return to_bitstrings(rng.choice(len(p), size=num_samples, p=p), n)


def linear_xeb(p_true: np.ndarray, bits: np.ndarray) -> float:
    """F_XEB = 2ⁿ · mean_x p_true(x) - 1 over the sampled bitstrings: ≈ Σ 2ⁿ p² - 1 (≈ 1 for
    Porter–Thomas) for exact samples, 0 for uniform ones."""
    return float(len(p_true) * np.mean(p_true[to_index(bits)]) - 1.0)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) = Σ p ln(p/q) in nats (terms with p = 0 contribute 0; +inf where q = 0 < p)."""
    support = p > 0
    with np.errstate(divide="ignore"):
        return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def porter_thomas_entropy(n: int) -> float:
    """Expected Shannon entropy (nats) of a Porter–Thomas distribution on 2ⁿ outcomes: n ln 2 - (1 - γ)."""
    return n * np.log(2) - (1 - np.euler_gamma)
