"""benchmarks/gpu.sh runs its checks and every timed path on the CPU (``--cpu-dry-run``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_script_dry_run_passes_every_check_and_times_every_net():
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--cpu-dry-run", "--repeats", "1"],
                         capture_output=True, text=True, env=env, timeout=1200)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    checks = {r["name"]: r["value"] for r in lines if r["name"].startswith("check_")}
    assert len(checks) == 12 and all(v == 1 for v in checks.values()), checks
    timed = {r["name"] for r in lines if r["unit"] in ("s", "samples/s") and r["name"] != "total_time"}
    assert timed == {
        "made_sample_cached_samples_per_s", "made_vfe_step_s", "pixelcnn_sample_cached_samples_per_s",
        "pixelcnn_log_prob_grad_step_s", "pixelcnn_vfe_step_s", "transformer_sample_cached_samples_per_s",
        "transformer_mle_step_s",
    }  # fmt: skip
