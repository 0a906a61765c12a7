"""VFE training-step time on 1, 2, 4 forced host CPU devices at a fixed global batch.

Each device count runs in its own process with ``XLA_FLAGS=--xla_force_host_platform_device_count=D``
(the flag must be set before JAX starts). A step is what ``arjax.train.fit_free_energy(...,
mesh=arjax.parallel.data_mesh())`` runs: the global batch of exact samples is split over the D
devices of the mesh, the parameters are replicated and the gradients all-reduced. The D = 1 line is
the in-run baseline (the same step without a mesh). Step time is the median over ``--steps`` steps,
one compiled call each. Each line also reports the free energy of the first step, which must agree
across D (the sharded run draws the same samples).

On a machine with fewer cores than devices the point is correctness and the cost of the
collectives, not speed: forced host devices share the same cores.

Run: python benchmarks/scaling_devices.py [--devices 1,2,4] [--batch 512] [--L 8] [--steps 20]
"""

import argparse
import json
import os
import subprocess
import sys
import time


def child(args):
    import jax
    import optax

    from arjax.nn import MADE
    from arjax.parallel import data_mesh
    from arjax.targets import IsingSquare
    from arjax.train import fit_free_energy

    n = args.L * args.L
    net = MADE(num_positions=n, num_categories=2, width=4 * n, depth=2, key=jax.random.key(0))
    mesh = data_mesh() if len(jax.devices()) > 1 else None

    stamps = [time.perf_counter()]
    _, history = fit_free_energy(net, IsingSquare(args.L), 0.44, optimizer=optax.adam(1e-3), num_steps=args.steps + 1,
                                 batch_size=args.batch, key=jax.random.key(1), log_every=1, progress=False, mesh=mesh,
                                 callback=lambda *_: stamps.append(time.perf_counter()))
    compile_s = stamps[1] - stamps[0]
    per_step = sorted(b - a for a, b in zip(stamps[1:], stamps[2:]))[args.steps // 2]
    print(json.dumps(dict(devices=len(jax.devices()), step_s=per_step, compile_s=compile_s,
                          first_free_energy=float(history["free_energy"][0]))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts (default 1,2,4)")
    parser.add_argument("--batch", type=int, default=512, help="global batch of samples per step (default 512)")
    parser.add_argument("--L", type=int, default=8, help="Ising lattice side; MADE width 4·L² (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    sys.path.insert(0, os.path.dirname(__file__))
    from common import emit, emit_environment

    emit_environment()
    baseline = None
    for devices in [int(d) for d in args.devices.split(",")]:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        command = [sys.executable, __file__, "--child", f"--batch={args.batch}", f"--L={args.L}",
                   f"--steps={args.steps}"]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        baseline = result["step_s"] if baseline is None else baseline
        emit(f"vfe_step_{devices}dev", result["step_s"], "s", devices=devices, batch=args.batch, L=args.L,
             compile_s=result["compile_s"], first_free_energy=result["first_free_energy"],
             relative_to_first=result["step_s"] / baseline)


if __name__ == "__main__":
    main()
