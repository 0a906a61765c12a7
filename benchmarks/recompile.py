"""Time to the first step of ``fit_free_energy``: the first call compiles, later calls of the same configuration do not.

Prints one JSON line ``{"name", "value", "unit", ...}`` per measurement. Each call trains VAN's
setting (Z₂, gradient clipping at 1, Adam at 1e-3) on the L×L ferromagnet with ``log_every=1``
and a callback that stops it after its first step, so the call's wall time is the time to its
first step: setup, compilation (if any), one step and the host round trip. Three calls per net:

- ``first_call``: a fresh net at β = 0.3 — it compiles the training chunk; the in-run baseline;
- ``second_call``: another fresh net (another initialisation key), β = 0.44 and another key, the
  same ``optimizer`` object — the same configuration, so it reuses the compilation;
- ``resumed_call``: the next rung of a β ladder, β = 0.5, continuing the second call's
  ``TrainState`` (``resume=``).

``warm_call`` is the best of ``--repeats`` further resumed calls: the time to the first step when
nothing is left to compile. ``compiles`` counts XLA backend compilations during the call (the net
is built before the clock starts). Nets: ``made`` (depth 2, width 4N) and ``pixelcnn``
(``PixelCNN.van_default(L)``, VAN's 13×13 kernels).

Run: python benchmarks/recompile.py [--sections made,pixelcnn] [--L 8] [--batch-size 100] [--repeats 3]
"""

import argparse
import contextlib
import time

import jax
import optax
from common import chosen_sections, emit, emit_environment

from arjax.nn import MADE, PixelCNN
from arjax.targets import IsingSquare
from arjax.train import fit_free_energy

SECTIONS = ("made", "pixelcnn")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {SECTIONS}")
    parser.add_argument("--L", type=int, default=8, help="lattice side")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls, best of which is reported")
    args = parser.parse_args()
    emit_environment()
    for section in chosen_sections(parser, args.sections, SECTIONS):
        measure(section, args)


def measure(section: str, args) -> None:
    target = IsingSquare(args.L)
    optimizer = optax.adam(1e-3)
    config = dict(net=section, L=args.L, batch_size=args.batch_size)

    def call(init_key, beta, key, resume=None):
        net = make_net(section, args.L, init_key)
        with compile_count() as compiles:
            start = time.perf_counter()
            *_, state = fit_free_energy(
                net, target, beta, optimizer=optimizer, num_steps=10**6,
                batch_size=args.batch_size, key=key, symmetry="z2", clip_grad=1.0, log_every=1, progress=False,
                callback=lambda *_: True, resume=resume, return_state=True,
            )
            seconds = time.perf_counter() - start
        return seconds, compiles[0], state

    first, first_compiles, _ = call(jax.random.key(0), 0.3, jax.random.key(1))
    second, second_compiles, state = call(jax.random.key(2), 0.44, jax.random.key(3))
    resumed, resumed_compiles, state = call(jax.random.key(2), 0.5, jax.random.key(3), resume=state)
    warm = min(call(jax.random.key(2), 0.5, jax.random.key(3), resume=state)[0] for _ in range(args.repeats))
    emit(f"{section}_first_call_time_to_first_step", first, "s", compiles=first_compiles, **config)
    emit(f"{section}_second_call_time_to_first_step", second, "s", compiles=second_compiles, **config)
    emit(f"{section}_resumed_call_time_to_first_step", resumed, "s", compiles=resumed_compiles, **config)
    emit(f"{section}_warm_call_time_to_first_step", warm, "s", **config)
    emit(f"{section}_second_call_speedup", first / second, "x", baseline="first_call", **config)


def make_net(name: str, L: int, key):
    if name == "made":
        return MADE(L * L, 2, depth=2, width=4 * L * L, key=key)
    return PixelCNN.van_default(L, key=key)


@contextlib.contextmanager
def compile_count():
    count = [0]

    def listener(event, duration, **kwargs):
        count[0] += event == "/jax/core/compile/backend_compile_duration"

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


if __name__ == "__main__":
    main()
