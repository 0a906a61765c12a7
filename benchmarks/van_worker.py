"""The PyTorch VAN reference's MADE training step, timed call by call on request, for ``benchmarks/vfe.py --reference``.

Runs in VAN's venv (``/tmp/vanvenv``, built by ``../shared/peers/van_bench.sh``) on the reference's
own modules (``VAN_SRC`` = ``stat-mech-van/src_ising`` on ``sys.path``; its ``args.py`` parses the
command line given here, section 3 of ``van_bench.sh``: MADE depth 3, width 4, Z₂, clipping 1,
Adam 1e-3). One step is exactly the body of the loop in its ``main.py``: sampling under
``no_grad``, ``log_prob``, the Ising energy, the REINFORCE loss, ``backward``, gradient clipping and
``optimizer.step()``. Protocol as ``benchmarks/netket_worker.py``: ``prepare made_b<batch>`` runs
one step (warm-up), ``run made_b<batch>`` times one step in wall seconds and CPU seconds
(``time.process_time``, all threads), ``quit``.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.environ["VAN_SRC"])
sys.argv = [sys.argv[0], "--ham", "fm", "--lattice", "sqr", "--L", "16", "--beta", "0.44", "--net", "made",
            "--net_depth", "3", "--net_width", "4", "--bias", "--z2", "--beta_anneal", "0.998", "--clip_grad", "1",
            "--cuda", "-1", "--out_dir", "", "--seed", "1"]  # fmt: skip

import ising  # noqa: E402
import torch  # noqa: E402
import utils  # noqa: E402, F401  (sets the default dtype, the seed and args.device, as main.py does)
from args import args  # noqa: E402
from made import MADE  # noqa: E402
from torch import nn  # noqa: E402


def main():
    net = MADE(**vars(args)).to(args.device)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.999))
    steps = [0]

    def step(batch):
        optimizer.zero_grad()
        with torch.no_grad():
            sample, _ = net.sample(batch)
        log_prob = net.log_prob(sample)
        beta = args.beta * (1 - args.beta_anneal ** steps[0])
        with torch.no_grad():
            energy = ising.energy(sample, args.ham, args.lattice, args.boundary)
            loss = log_prob + beta * energy
        torch.mean((loss - loss.mean()) * log_prob).backward()
        nn.utils.clip_grad_norm_(params, args.clip_grad)
        optimizer.step()
        steps[0] += 1

    reply({"ready": True, "versions": f"torch {torch.__version__} threads {torch.get_num_threads()}"})
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            break
        batch = int(rest[0].rsplit("_b", 1)[1])
        start, start_cpu = time.perf_counter(), time.process_time()
        step(batch)
        record = {"name": rest[0], "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu}
        reply(record if command == "run" else {"name": rest[0], "compile_s": 0.0})


def reply(record):
    print("WORKER " + json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
