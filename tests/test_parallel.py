"""Data parallelism: 4 forced host devices and 2 ``jax.distributed`` processes match one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_COMPILE_FLAGS

WORKER = str(Path(__file__).with_name("parallel_worker.py"))


def _env(devices: int) -> dict:
    flags = " ".join([f"--xla_force_host_platform_device_count={devices}", *FAST_COMPILE_FLAGS])
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    return env


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel") / "four.json"
    subprocess.run([sys.executable, WORKER, str(out)], env=_env(4), check=True, timeout=600)
    return json.loads(out.read_text())


def _assert_same_numbers(sharded, single):
    np.testing.assert_array_equal(sharded["samples"], single["samples"])
    np.testing.assert_allclose(sharded["log_prob"], single["log_prob"], rtol=1e-5)
    np.testing.assert_allclose(sharded["mle"], single["mle"], rtol=1e-4)
    np.testing.assert_allclose(sharded["mle_microbatches"], single["mle_microbatches"], rtol=1e-4)
    np.testing.assert_allclose(single["mle_microbatches"], single["mle"], rtol=1e-4)
    np.testing.assert_allclose(sharded["vfe"], single["vfe"], rtol=1e-4)


def test_four_host_devices_give_the_numbers_of_one(four_devices):
    assert four_devices["devices"] == 4
    _assert_same_numbers(four_devices["sharded"], four_devices["single"])
    assert "batch_size=10 must be divisible by the 4 devices" in four_devices["sharded"]["indivisible_error"]
    assert four_devices["single"]["indivisible_error"] is None


@pytest.mark.slow  # spawns two JAX processes; one process with four host devices is the default check
def test_two_processes_give_the_numbers_of_one(four_devices, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two.json"
    workers = [
        subprocess.Popen([sys.executable, WORKER, str(out), str(i), "2", str(port)], env=_env(1),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), "\n".join(logs)
    result = json.loads(out.read_text())
    assert result["devices"] == 2
    _assert_same_numbers(result["sharded"], four_devices["single"])
