"""Sampling throughput and training-step cost of arjax's nets, each beside an in-run baseline.

Prints one JSON line ``{"name", "value", "unit", ...}`` per measurement; extra keys give the
configuration. Every jitted function is compiled ahead of time (``jit(...).lower(...).compile()``,
reported apart as ``compile_s``), then timed as the best of ``--repeats`` calls after a warm-up
(``block_until_ready``); slow baselines get a single timed call. Sections (``--sections``, comma
separated, default all):

- ``made``: ``made_sample_cached`` (one ``lax.scan`` over positions using MADE's ``decode_step``,
  vmapped batch) vs ``made_sample_generic_baseline`` (the same scan rerunning the full net at every
  position, ``cached=False``) and ``made_sample_python_loop_baseline`` (N jitted per-position
  calls driven from Python, as the PyTorch VAN reference samples); ``made_log_prob_grad`` (one
  jitted ``value_and_grad`` of the mean log-prob) vs the forward pass.
- ``transformer``: causal Transformer (d_model 128, 4 heads, 2 layers, K=2, N=256) sampling with
  the KV cache vs the naive sampler that reruns the full net at every position (``cached=False``).
  The naive sampler's cost per sample does not depend on the batch, so it runs on
  ``--naive-batch`` sequences (stated in its line); ``transformer_cache_speedup`` is the ratio of
  samples/s.
- ``pixelcnn``: ``PixelCNN.van_default(16)`` sampling at batch 1000 with the cached path, beside
  the naive sampler (full pass per site, timed over the first ``--naive-sites`` sites and
  extrapolated: every site costs the same pass); one VFE training step (sample + log_prob +
  score-function gradient, ``jax.value_and_grad(free_energy_loss)`` on ``IsingSquare(16)``) at
  batch 1000, beside its forward pass (sampling and loss value only).
- ``pixelcnn_conv_baseline``: log-prob + gradient of the PixelCNN with arjax's row-Toeplitz
  matmuls vs the same weights run through masked ``lax.conv_general_dilated`` (as NetKet's
  ``ARNNConv2D``); the logits agree to float32 rounding.
- ``mle``: one jitted maximum-likelihood step of a Transformer (batch 64, N=256, d_model 256,
  4 heads, 4 layers, K=2: ``value_and_grad_by_microbatch(nll)`` over microbatches of
  ``--mle-microbatch`` sequences + ``optax.adam``; the whole batch in one pass as the baseline
  in the same run), its useful FLOPs counted
  analytically (dense layers, attention over the causal triangle only, head) beside XLA's
  ``cost_analysis``, and the achieved FLOP/s against the peak of a jitted float32 ``jnp.dot`` of
  two 2048×2048 matrices measured in the same run. Where the time
  goes, microbatch by microbatch as in the step: the forward pass, and one block's attention
  core (scores, softmax, weighted sum), projections (q/k/v and output) and MLP, each forward +
  backward, times the number of layers.

The 1-minute load average is printed first and last: other processes slow every number.

Run: python benchmarks/sampling.py [--sections made,transformer,pixelcnn,pixelcnn_conv_baseline,mle]
     [--repeats 3] [--naive-batch 32] (see --help for the sizes)
"""

import argparse
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import chosen_sections, compile_timed, emit, emit_environment, timed, timed_cpu
from jax import lax

import arjax
from arjax.allowed import masked_log_softmax
from arjax.nn.pixelcnn import PixelCNN
from arjax.nn.transformer import Transformer, _causal_attend
from arjax.objectives import free_energy_loss, nll
from arjax.targets import IsingSquare
from arjax.train import value_and_grad_by_microbatch

SECTIONS = ("made", "transformer", "pixelcnn", "pixelcnn_conv_baseline", "mle")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--repeats", type=int, default=3)
    group = parser.add_argument_group("made")
    group.add_argument("--positions", type=int, default=256)
    group.add_argument("--batch", type=int, default=1024)
    group.add_argument("--width", type=int, default=512)
    group.add_argument("--depth", type=int, default=2)
    group = parser.add_argument_group("transformer")
    group.add_argument("--transformer-positions", type=int, default=256)
    group.add_argument("--transformer-batch", type=int, default=256)
    group.add_argument("--naive-batch", type=int, default=32, help="sequences for the naive Transformer sampler")
    group = parser.add_argument_group("pixelcnn")
    group.add_argument("--L", type=int, default=16)
    group.add_argument("--pixelcnn-batch", type=int, default=1000)
    group.add_argument("--naive-sites", type=int, default=2, help="sites timed for the naive PixelCNN sampler")
    group.add_argument("--beta", type=float, default=0.44)
    group = parser.add_argument_group("mle")
    group.add_argument("--mle-batch", type=int, default=64)
    group.add_argument("--mle-positions", type=int, default=256)
    group.add_argument("--mle-d-model", type=int, default=256)
    group.add_argument("--mle-layers", type=int, default=4)
    group.add_argument("--mle-microbatch", type=int, default=2,
                       help="sequences per microbatch of the step (arjax.train.value_and_grad_by_microbatch); 0: none")
    group.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args()
    args.mle_microbatch = args.mle_microbatch or None
    sections = chosen_sections(parser, args.sections, SECTIONS)

    emit_environment()
    for section in SECTIONS:
        if section in sections:
            globals()[f"bench_{section}"](args)
    emit("load_average_1min", os.getloadavg()[0], "processes")


# --------------------------------------------------------------------------------------- MADE


def bench_made(args):
    n, batch = args.positions, args.batch
    config = dict(N=n, K=2, batch=batch, width=args.width, depth=args.depth)
    net = arjax.nn.MADE(num_positions=n, num_categories=2, width=args.width, depth=args.depth, key=jax.random.key(0))
    key = jax.random.key(1)

    for cached, name in [(True, "made_sample_cached"), (False, "made_sample_generic_baseline")]:
        sample = eqx.filter_jit(lambda net, key, cached=cached: arjax.sample(net, key, (batch,), cached=cached))
        compile_s, run_s = timed(sample, net, key, repeats=args.repeats)
        emit(name, batch / run_s, "samples/s", compile_s=compile_s, **config)

    loop = python_loop_sampler(net, batch)
    loop(net, key)  # compiles the per-position step
    start = time.perf_counter()
    jax.block_until_ready(loop(net, key))
    emit("made_sample_python_loop_baseline", batch / (time.perf_counter() - start), "samples/s", **config)

    x = arjax.sample(net, key, (batch,))

    def log_prob(net, x):
        return arjax.Autoregressive(net).log_prob(x).mean()

    compile_s, run_s = timed(eqx.filter_jit(eqx.filter_value_and_grad(log_prob)), net, x, repeats=args.repeats)
    emit("made_log_prob_grad", run_s * 1e3, "ms", compile_s=compile_s, **config)
    _, run_s = timed(eqx.filter_jit(log_prob), net, x, repeats=args.repeats)
    emit("made_log_prob_forward_baseline", run_s * 1e3, "ms", **config)


def python_loop_sampler(net, batch):
    @eqx.filter_jit
    def position_step(net, x, i, key):
        logits = jax.vmap(net)(x)[:, i]
        token = jax.random.categorical(key, masked_log_softmax(logits, None)).astype(jnp.int32)
        return x.at[:, i].set(token)

    def run(net, key):
        x = jnp.zeros((batch, net.num_positions), jnp.int32)
        for i in range(net.num_positions):
            x = position_step(net, x, i, jax.random.fold_in(key, i))
        return x

    return run


# -------------------------------------------------------------------------------- Transformer


def bench_transformer(args):
    n, batch = args.transformer_positions, args.transformer_batch
    naive_batch = min(args.naive_batch, batch)
    config = dict(N=n, K=2, d_model=128, num_heads=4, num_layers=2)
    net = Transformer(n, 2, d_model=128, num_heads=4, num_layers=2, key=jax.random.key(0))
    key = jax.random.key(1)

    sample = eqx.filter_jit(lambda net, key: arjax.sample(net, key, (batch,), cached=True))
    compile_s, cached_s = timed(sample, net, key, repeats=args.repeats)
    cached_rate = batch / cached_s
    emit("transformer_sample_cached", cached_rate, "samples/s", batch=batch, compile_s=compile_s, **config)

    naive = eqx.filter_jit(lambda net, key: arjax.sample(net, key, (naive_batch,), cached=False))
    compile_s, naive_s = timed(naive, net, key, repeats=1, warmup=False)
    naive_rate = naive_batch / naive_s
    emit("transformer_sample_naive_baseline", naive_rate, "samples/s", batch=naive_batch, compile_s=compile_s,
         note="full net rerun at every position (cached=False); cost per sample independent of batch",
         **config)  # fmt: skip
    emit("transformer_cache_speedup", cached_rate / naive_rate, "x", batch=batch, naive_batch=naive_batch, **config)


# ----------------------------------------------------------------------------------- PixelCNN


def bench_pixelcnn(args):
    L, batch = args.L, args.pixelcnn_batch
    net = PixelCNN.van_default(L, key=jax.random.key(0))
    config = dict(net=f"van_default({L})", N=L * L, K=2, batch=batch)
    key = jax.random.key(1)

    sample = eqx.filter_jit(lambda net, key: arjax.sample(net, key, (batch,), cached=True))
    compile_s, run_s = timed(sample, net, key, repeats=args.repeats)
    emit("pixelcnn_sample_cached", batch / run_s, "samples/s", compile_s=compile_s, **config)

    sites = min(args.naive_sites, L * L)
    naive = eqx.filter_jit(lambda net, key: naive_pixelcnn_sample(net, key, batch, sites))
    compile_s, run_s = timed(naive, net, key, repeats=1)
    total_s = run_s * L * L / sites
    emit("pixelcnn_sample_naive_baseline", batch / total_s, "samples/s", compile_s=compile_s,
         note=f"full pass per site; {run_s:.3f} s for the first {sites} of {L * L} sites, extrapolated",
         **config)  # fmt: skip

    target = IsingSquare(L)
    beta = args.beta

    def loss(net, key):
        return free_energy_loss(net, key, target, beta, batch)

    step = jax.jit(jax.value_and_grad(loss))
    compile_s, run_s = timed(step, net, key, repeats=args.repeats)
    emit("pixelcnn_vfe_step", run_s, "s", compile_s=compile_s, beta=beta, target=f"IsingSquare({L})",
         note="sample + log_prob + score-function gradient", **config)  # fmt: skip
    _, run_s = timed(jax.jit(loss), net, key, repeats=args.repeats)
    emit("pixelcnn_vfe_forward_baseline", run_s, "s", beta=beta, note="sample + loss value only", **config)


def naive_pixelcnn_sample(net, key, batch, sites):
    """Ancestral sampling that reruns the whole net at every site, over the first ``sites`` sites."""

    def one(key):
        def step(x, i):
            logits = net(x)[i]
            token = jax.random.categorical(jax.random.fold_in(key, i), logits).astype(jnp.int32)
            return x.at[i].set(token), None

        return lax.scan(step, jnp.zeros(net.num_positions, jnp.int32), jnp.arange(sites))[0]

    return jax.vmap(one)(jax.random.split(key, batch))


def bench_pixelcnn_conv_baseline(args):
    L, batch = args.L, args.pixelcnn_batch
    net = PixelCNN.van_default(L, key=jax.random.key(0))
    config = dict(net=f"van_default({L})", N=L * L, K=2, batch=batch)
    x = jax.random.bernoulli(jax.random.key(2), 0.5, (batch, L * L)).astype(jnp.int32)
    logits = eqx.filter_jit(lambda net, x: (jax.vmap(net)(x), jax.vmap(lambda s: conv_logits(net, s))(x)))
    rowmatmul, conv = logits(net, x[:8])
    emit("pixelcnn_conv_vs_rowmatmul_max_abs_logit_diff", jnp.max(jnp.abs(rowmatmul - conv)), "1", **config)
    for impl, fn in (("rowmatmul", lambda n, s: n(s)), ("conv", conv_logits)):
        loss = data_log_prob(fn)
        repeats = args.repeats if impl == "rowmatmul" else 1
        suffix = "" if impl == "rowmatmul" else "_baseline"
        compile_s, run_s = timed(eqx.filter_jit(eqx.filter_value_and_grad(loss)), net, x, repeats=repeats)
        emit(f"pixelcnn_log_prob_grad_{impl}{suffix}", run_s, "s", compile_s=compile_s, **config)
        _, run_s = timed(eqx.filter_jit(loss), net, x, repeats=repeats)
        emit(f"pixelcnn_log_prob_forward_{impl}{suffix}", run_s, "s", **config)


def data_log_prob(logits):
    def loss(net, x):
        def log_prob(s):
            rows = jax.nn.log_softmax(logits(net, s))
            return jnp.take_along_axis(rows, s[:, None], axis=1).sum()

        return jnp.mean(jax.vmap(log_prob)(x))

    return loss


def conv_logits(net: PixelCNN, x):
    """The same net evaluated with masked ``lax.conv`` layers (zero padding, as VAN and NetKet)."""
    L = net.L
    a = conv(net.first, jax.nn.one_hot(x, net.num_categories).reshape(L, L, -1))
    for block in net.blocks:
        a = block.combine(a, conv(block.conv, block.inputs(a)))
    if net.head is not None:
        a = net.head(a)
    return a.reshape(L * L, -1)


def conv(layer, u):
    h = layer.half_kernel
    mask = np.ones((h + 1, 2 * h + 1), np.float32)
    mask[h, h + (0 if layer.exclusive else 1) :] = 0
    kernel = jnp.transpose(layer.weight[:, :, : h + 1] * mask, (2, 3, 1, 0))
    dimensions = ("NHWC", "HWIO", "NHWC")
    out = lax.conv_general_dilated(u[None], kernel, (1, 1), [(h, 0), (h, h)], dimension_numbers=dimensions)
    return out[0] + layer.bias


# ---------------------------------------------------------------------------- Transformer MLE


def bench_mle(args):
    n, batch, d, layers = args.mle_positions, args.mle_batch, args.mle_d_model, args.mle_layers
    micro = args.mle_microbatch
    heads, K = 4, 2
    config = dict(N=n, K=K, batch=batch, d_model=d, num_heads=heads, num_layers=layers)
    net = Transformer(n, K, d_model=d, num_heads=heads, num_layers=layers, key=jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (batch, n)).astype(jnp.int32)
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(net)

    def step_of(microbatch_size):
        def step(net, opt_state, x):
            loss, grads = value_and_grad_by_microbatch(nll, net, x, microbatch_size=microbatch_size)
            updates, opt_state = optimizer.update(grads, opt_state, net)
            return optax.apply_updates(net, updates), opt_state, loss

        return jax.jit(step)

    compiled, compile_s = compile_timed(step_of(micro), net, opt_state, x)
    whole, whole_compile_s = compile_timed(step_of(None), net, opt_state, x)
    flops = whole.cost_analysis()  # XLA counts a lax.scan's body once: take the whole batch's step
    flops = (flops[0] if isinstance(flops, list) else flops)["flops"]

    # Peak: a jitted float32 matmul. Its calls alternate with the steps' (best of each), so that
    # all see the same load from other processes.
    size = args.matmul_size
    a = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    matmul = jax.jit(jnp.dot).lower(a, a).compile()
    matmul_s = step_s = matmul_cpu = step_cpu = whole_s = float("inf")
    for _ in range(args.repeats):
        _, wall, cpu = timed_cpu(matmul, a, a, repeats=3)
        matmul_s, matmul_cpu = min(matmul_s, wall), min(matmul_cpu, cpu)
        _, wall, cpu = timed_cpu(compiled, net, opt_state, x, repeats=1, warmup=step_s == float("inf"))
        step_s, step_cpu = min(step_s, wall), min(step_cpu, cpu)
        _, wall, _ = timed_cpu(whole, net, opt_state, x, repeats=1, warmup=whole_s == float("inf"))
        whole_s = min(whole_s, wall)
    peak = 2 * size**3 / matmul_s
    emit("matmul_peak_flops", peak / 1e9, "GFLOP/s", size=size, dtype="float32",
         per_cpu_s=round(2 * size**3 / matmul_cpu / 1e9, 2), load_average_1min=os.getloadavg()[0])  # fmt: skip
    analytic = analytic_step_flops(net, batch, n)
    emit("mle_step_flops_xla", flops / 1e9, "GFLOP", note="XLA cost_analysis (elementwise work included)",
         **config)  # fmt: skip
    emit("mle_step_flops_analytic", analytic["total"] / 1e9, "GFLOP",
         note="useful: 6*params*tokens (params without embeddings) + causal attention 3*2*B*L*N^2*d + head",
         **{k: round(v / 1e9, 3) for k, v in analytic.items() if k != "total"}, **config)  # fmt: skip
    config["microbatch_size"] = micro
    emit("mle_step_time", step_s * 1e3, "ms", compile_s=compile_s, **config)
    emit("mle_step_flops_per_s", analytic["total"] / step_s / 1e9, "GFLOP/s", flops="analytic (useful)", **config)
    emit("mle_step_fraction_of_matmul_peak", analytic["total"] / step_s / peak, "1", flops="analytic (useful)",
         peak_gflops=round(peak / 1e9, 3), xla_flops_fraction=round(flops / step_s / peak, 4), target=0.6,
         **config)  # fmt: skip
    emit("mle_step_fraction_of_matmul_peak_cpu_s", (analytic["total"] / step_cpu) / (2 * size**3 / matmul_cpu), "1",
         flops="analytic (useful)", step_cpu_s=step_cpu, matmul_cpu_s=matmul_cpu, target=0.6,
         note="per CPU second (time.process_time), interleaved with the matmul", **config)  # fmt: skip
    emit("mle_step_time_whole_batch", whole_s * 1e3, "ms", compile_s=whole_compile_s,
         fraction_of_matmul_peak=round(analytic["total"] / whole_s / peak, 4),
         speedup_of_microbatches=round(whole_s / step_s, 3), note="baseline: the batch in one pass, same run",
         **{**config, "microbatch_size": None})  # fmt: skip

    # Where the time goes, at the microbatch size: each piece's forward + backward summed over
    # the batch's microbatches in one lax.scan, as in the step.
    micro = micro or batch
    forward, _ = compile_timed(jax.jit(lambda net, x: jax.lax.map(lambda m: nll(net, m), x).mean()), net,
                               x.reshape(-1, micro, n))  # fmt: skip
    _, forward_s = timed(forward, net, x.reshape(-1, micro, n), repeats=args.repeats)
    emit("mle_forward_time", forward_s * 1e3, "ms", fraction_of_step=round(forward_s / step_s, 3), **config)

    block = net.blocks[0]
    h = 0.1 * jax.random.normal(jax.random.key(3), (batch // micro, micro, n, d), jnp.float32)
    q, k, v = jax.vmap(jax.vmap(block.query_key_value))(h)

    def attention_core(q, k, v):
        return jax.vmap(lambda q, k, v: _causal_attend(q, k.swapaxes(1, 2), v))(q, k, v)

    def projections(block, h):
        q, k, v = jax.vmap(block.query_key_value)(h)
        attended = q + k + v  # stands in for the attention core, which is timed apart
        return jnp.einsum("bhme,hed->bmd", attended, block.out_weight) + block.out_bias

    def mlp(block, h):
        return jax.nn.gelu(block.mlp_norm(h) @ block.up_weight + block.up_bias) @ block.down_weight + block.down_bias

    def whole_block(block, h):
        q, k, v = jax.vmap(block.query_key_value)(h)
        return jax.vmap(block.finish)(h, attention_core(q, k, v))

    parts = [
        ("attention_core", attention_core, (q, k, v), 2 * batch * n * n * d),  # causal half
        ("qkv_and_output_projections", projections, (block, h), 2 * batch * n * 4 * d * d),
        ("mlp", mlp, (block, h), 2 * batch * n * 8 * d * d),
        ("whole_block", whole_block, (block, h), None),
    ]
    for name, fn, inputs, forward_flops in parts:
        summed = jax.jit(lambda *a, fn=fn: microbatch_grads(fn, a))
        compiled, _ = compile_timed(summed, *inputs)
        _, part_s = timed(compiled, *inputs, repeats=args.repeats)
        extra = {}
        if forward_flops is not None:  # forward + backward = 3 × forward
            rate = 3 * forward_flops / part_s
            extra = dict(gflops_per_s=rate / 1e9, fraction_of_peak=rate / peak)
        emit(f"mle_time_{name}", part_s * layers * 1e3, "ms", fraction_of_step=round(part_s * layers / step_s, 3),
             note=f"one block's {name} forward+backward x {layers} layers", **extra, **config)  # fmt: skip


def microbatch_grads(fn, inputs):
    """Gradients of ``sum(fn(*inputs)**2)`` w.r.t. all inputs, microbatch by microbatch in one ``lax.scan``.

    Inputs that are modules (a block) are shared by every microbatch and their gradients summed;
    arrays carry the microbatches on their leading axis.
    """
    shared = [i for i, a in enumerate(inputs) if isinstance(a, eqx.Module)]

    def body(total, microbatch):
        args = [inputs[i] if i in shared else microbatch[i] for i in range(len(inputs))]
        grads = jax.grad(lambda *a: jnp.sum(fn(*a) ** 2), argnums=tuple(range(len(args))))(*args)
        total = [jax.tree.map(jnp.add, t, grads[i]) for t, i in zip(total, shared)]
        return total, [g for i, g in enumerate(grads) if i not in shared]

    zero = [jax.tree.map(jnp.zeros_like, inputs[i]) for i in shared]
    return jax.lax.scan(body, zero, [None if i in shared else a for i, a in enumerate(inputs)])


def analytic_step_flops(net, batch, n):
    """Forward+backward FLOPs of the MLE step: 2 per multiply-add forward, 4 backward."""
    d, layers, K = net.d_model, net.num_layers, net.num_categories
    per_block = 4 * d * d + 8 * d * d  # q/k/v + output projections, MLP up + down (ratio 4)
    tokens = batch * n
    dense = 6 * layers * per_block * tokens
    attention = 3 * layers * 2 * batch * n * n * d  # q·k and weights·v over the causal triangle: 2*2*n^2*d/2 forward
    head = 6 * d * K * tokens
    return dict(dense=dense, attention=attention, head=head, total=dense + attention + head)


# ------------------------------------------------------------------------------------- timing


if __name__ == "__main__":
    main()
