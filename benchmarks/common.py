"""What every benchmark script shares: JSON-line output, ahead-of-time timing, section choice."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp


def emit(name, value, unit, **extra):
    """Print one JSON line ``{"name", "value", "unit", ...extra}``."""
    record = {"name": name, "value": float(f"{float(value):.6g}"), "unit": unit}
    record.update({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in extra.items()})
    print(json.dumps(record), flush=True)


def emit_environment():
    """The JAX version, device and current load, so a reader can judge the numbers."""
    emit("versions", 0, "info", jax=jax.__version__, backend=jax.default_backend(), device=str(jax.devices()[0]),
         cpu_count=os.cpu_count())  # fmt: skip
    emit("load_average_1min", os.getloadavg()[0], "processes")


def chosen_sections(parser, requested: str, available: tuple[str, ...]) -> list[str]:
    """The comma-separated ``requested`` sections, or a parser error naming the unknown ones."""
    sections = [s.strip() for s in requested.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(available))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {available}")
    return sections


def compile_timed(fn, *args):
    """Compile ``fn`` ahead of time for ``args``; returns ``(compiled, seconds)``."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def timed(fn, *args, repeats, warmup=True):
    """Compile ahead of time (when ``fn`` can be lowered), warm up, then best of ``repeats`` calls.

    Returns ``(compile seconds, best seconds)``.
    """
    compile_s, best, _ = timed_cpu(fn, *args, repeats=repeats, warmup=warmup)
    return compile_s, best


def timed_cpu(fn, *args, repeats, warmup=True):
    """As :func:`timed`, also the best CPU seconds of a call (``time.process_time``: all threads).

    On a machine shared with other jobs, CPU seconds are far less distorted than wall seconds
    (time spent descheduled is not counted). Returns ``(compile s, best wall s, best CPU s)``.
    """
    compile_s = 0.0
    if hasattr(fn, "lower"):
        fn, compile_s = compile_timed(fn, *args)
    if warmup:
        jax.block_until_ready(fn(*args))
    best = best_cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        best = min(best, time.perf_counter() - start)
    return compile_s, best, best_cpu


def matmul_peak(size: int, repeats: int) -> float:
    """FLOP/s of a jitted float32 ``jnp.dot`` of two ``size``×``size`` matrices (best of ``repeats``)."""
    a = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    _, best = timed(jax.jit(jnp.dot), a, a, repeats=repeats)
    peak = 2 * size**3 / best
    emit("matmul_peak", peak / 1e9, "GFLOP/s", size=size, dtype="float32")
    return peak


class Worker:
    """A peer's timing worker (``benchmarks/netket_worker.py``, ``van_worker.py``) in the peer's own venv.

    Asked for one call at a time (``prepare NAME``: compile and warm up; ``run NAME``: one timed
    call, wall and CPU seconds), so that a benchmark can alternate the peer's calls with its own.
    """

    def __init__(self, python, script, **env):
        self.proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(os.environ, **env), text=True)  # fmt: skip
        self.versions = self._read()["versions"]

    def ask(self, command: str, name: str) -> dict:
        self.proc.stdin.write(f"{command} {name}\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("WORKER "):
                return json.loads(line[len("WORKER ") :])
        sys.exit(f"worker {self.proc.args[1]} ended (exit {self.proc.wait()})")

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()
