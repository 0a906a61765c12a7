"""Memory of cached Transformer sampling: long sequences fit in a fixed, linear-size KV cache.

Sampling N = 1024 positions for a batch of 256 runs in a fresh Python process (so its peak
resident memory is its own) that compiles the sampler, inspects the compiled program and draws the
samples. The KV cache is ``2 · layers · batch · N · d_model`` floats (268 MB here); nothing
carried from one decoding step to the next may be ``O(N²)`` per sequence.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import FAST_COMPILE_FLAGS

N, BATCH, D_MODEL, NUM_LAYERS = 1024, 256, 64, 2
LIMIT_BYTES = 2 * 1024**3

CHILD = textwrap.dedent(
    """
    import json, re, sys, time

    def peak_rss_bytes():
        # VmHWM belongs to this process image; ru_maxrss would also count the parent's RSS at fork,
        # which Linux carries across exec.
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    import jax, jax.numpy as jnp
    from arjax.nn.transformer import Transformer
    from arjax.sampling import sample_and_log_prob

    N, BATCH, D_MODEL, NUM_LAYERS = map(int, sys.argv[1:5])
    net = Transformer(N, 2, d_model=D_MODEL, num_heads=4, num_layers=NUM_LAYERS, key=jax.random.key(0))
    key = jax.random.key(1)
    start = time.perf_counter()
    sampler = jax.jit(lambda net, key: sample_and_log_prob(net, key, (BATCH,), cached=True))
    compiled = sampler.lower(net, key).compile()
    compile_s = time.perf_counter() - start

    # Every array carried from one iteration to the next is in the tuple type of a while op.
    loops = []
    for line in compiled.as_text().splitlines():
        match = re.search(r"= \\((.*?)\\) while\\(", line)
        if match:
            trips = re.search(r'"known_trip_count":\\{"n":"(\\d+)"', line)
            shapes = [[int(d) for d in dims.split(",") if d]
                      for dims in re.findall(r"[a-z]+[0-9]*\\[([0-9,]*)\\]", match.group(1))]
            loops.append({"trip_count": int(trips.group(1)) if trips else None, "shapes": shapes})

    start = time.perf_counter()
    x, log_prob = jax.block_until_ready(compiled(net, key))
    run_s = time.perf_counter() - start
    print(json.dumps({
        "loops": loops,
        "temp_bytes": compiled.memory_analysis().temp_size_in_bytes,
        "x_shape": list(x.shape),
        "tokens_in_range": bool(jnp.all((x == 0) | (x == 1))),
        "log_prob_finite": bool(jnp.all(jnp.isfinite(log_prob))),
        "compile_s": compile_s,
        "run_s": run_s,
        "max_rss_bytes": peak_rss_bytes(),
    }))
    """
)


@pytest.mark.slow  # a memory ceiling at full size; the linear cache itself is tested in test_transformer
def test_sampling_1024_positions_for_256_sequences_stays_under_2_gb_with_a_linear_cache():
    args = [str(v) for v in (N, BATCH, D_MODEL, NUM_LAYERS)]
    # Measure the default compiler configuration, not the suite's fast-compile flags.
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f not in FAST_COMPILE_FLAGS)
    env = dict(os.environ, XLA_FLAGS=flags)
    child = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=600, env=env)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print({k: v for k, v in report.items() if k != "loops"})  # shown with pytest -s

    assert report["x_shape"] == [BATCH, N]
    assert report["tokens_in_range"] and report["log_prob_finite"]
    assert report["max_rss_bytes"] < LIMIT_BYTES, f"peak RSS {report['max_rss_bytes'] / 2**30:.2f} GiB"

    kv_cache_elements = 2 * NUM_LAYERS * BATCH * N * D_MODEL
    decoding = [loop for loop in report["loops"] if loop["trip_count"] == N]
    assert decoding, f"no while loop over the {N} positions in the compiled sampler: {report['loops']}"
    for loop in report["loops"]:
        for shape in loop["shapes"]:
            # Largest linear-size buffer: one layer's keys or values, BATCH · N · D_MODEL floats.
            assert _size(shape) <= BATCH * N * D_MODEL, f"carried buffer {shape} is larger than one layer's cache"
            assert shape.count(N) <= 1, f"carried buffer {shape} is N×N"
    carried = sum(_size(shape) for shape in decoding[0]["shapes"])
    assert carried < 1.1 * kv_cache_elements, f"{carried} elements carried per step vs cache {kv_cache_elements}"
    assert report["temp_bytes"] < 3 * 4 * kv_cache_elements, f"{report['temp_bytes']} bytes of temporaries"


def _size(shape):
    size = 1
    for d in shape:
        size *= d
    return size
