"""Shared exact references for the test-suite: enumeration and a pooled chi-square test."""

import contextlib
import os

# The suite is dominated by XLA compile time of small programs. The backend's optimisation passes
# cost ~40% of the CPU time and the MLIR fusion emitters about as much again (the classic emitters
# compile a --quick example in half the CPU time); neither buys anything at these sizes.
# Subprocesses (examples) inherit the flags.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
os.environ["XLA_FLAGS"] = " ".join([*os.environ.get("XLA_FLAGS", "").split(), *FAST_COMPILE_FLAGS])

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from arjax.testing import chi_square_pvalue, sequence_index  # noqa: E402, F401  (the tests import them from here)


@pytest.fixture
def key():
    return jax.random.key(0)


class TableNet(eqx.Module):
    """An exact autoregressive net for a given distribution over all ``K**N`` sequences.

    Row ``i`` holds ``ln Σ_{x_{>i}} p(x_{<i}, k, x_{>i})`` looked up from the prefix, so
    ``Autoregressive(TableNet(p))`` is exactly ``p`` — an independent way to build a perfect ``q``.
    """

    marginals: list
    num_positions: int = eqx.field(static=True)
    num_categories: int = eqx.field(static=True)
    context_shape: None = eqx.field(static=True, default=None)

    def __init__(self, log_p, num_positions: int, num_categories: int):
        p = np.exp(np.asarray(log_p, np.float64) - logsumexp(np.asarray(log_p, np.float64)))
        p = p.reshape((num_categories,) * num_positions)
        self.marginals = [
            jnp.asarray(np.log(p.sum(axis=tuple(range(i + 1, num_positions))).reshape(-1, num_categories)), jnp.float32)
            for i in range(num_positions)
        ]
        self.num_positions = num_positions
        self.num_categories = num_categories

    def __call__(self, x, context=None):
        rows = []
        for i, table in enumerate(self.marginals):
            prefix = jnp.sum(x[:i] * self.num_categories ** jnp.arange(i - 1, -1, -1)) if i else 0
            rows.append(table[prefix])
        return jnp.stack(rows)


@contextlib.contextmanager
def count_compiles():
    """Count the XLA backend compilations inside the ``with`` block: ``with count_compiles() as n: …; n[0]``."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
