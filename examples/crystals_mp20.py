"""Binned vs continuous crystal models on the MP-20 binary/ternary subset, judged by the field's metrics.

Data: the 14,258 MP-20 crystals of 2–3 elements shipped with ``arjax.crystal`` (Materials Project,
CC BY 4.0; MP-20's val + test splits — *not* MP-20's training split), split 80/10/10 by
``seeded_split(seed=--split-seed)`` into train / validation / test. Both models see the same
crystals: those that fit both vocabularies (``--max-sites`` Wyckoff sites, ``--max-atoms`` atoms per
conventional cell; the binned model's length range is the training set's); rows that do not are
skipped and counted.

* **binned**: ``CrystalTokenizer`` (coordinates in 32 bins, lengths in 101, angles in 91) and a
  causal ``arjax.nn.Transformer`` with the ``CrystalGrammar`` mask;
* **continuous**: ``CrystalEncoder`` (skeleton first; truly free coordinates as von Mises mixtures,
  lengths log-normal mixtures scaled by N_atoms^(1/3), angles logit-normal mixtures) and a
  ``CrystalTransformer`` with the ``EncoderGrammar`` mask (atom cap included).

Both get the same width, depth, optimiser and budget (steps × batch). A third model,
**continuous+rl**, is the continuous net fine-tuned by ``fit_reward`` toward structural validity
(``arjax.crystal.design.validity_reward``: reward ``-penalty`` for an invalid crystal, KL weight
toward the trained net; ``--rl-frozen-skeleton`` tunes only the geometry conditionals; ``--rl-reward
overlap`` replaces the 0/1 reward by ``-penalty × arjax.crystal.geometry.overlap_penalty`` with the
pathwise gradient). A fourth, **conditioned**, is the continuous model conditioned on structural
validity, ``p(x | valid)``, drawn exactly by rejection (``arjax.crystal.design.sample_valid``): the
distribution the validity fine-tuning aims at, reached without training; its test NLL is the continuous
model's plus ``ln P(valid)`` (estimated by the acceptance rate), its skeleton NLL is not computed.

Reported per model: the test NLL of the discrete skeleton (space group, letters, elements; exact
for the continuous models, an importance-sampling estimate over the coordinate bins for the binned
one), and on ``--samples`` samples: structural validity (distances ≥ 0.5 Å, volume ≥ 0.1 Å³),
SMACT composition validity, uniqueness and novelty (StructureMatcher, against the training set),
the Wasserstein distances of density and of the number of elements to the test set (valid
samples), CDVAE's coverage COV-R / COV-P against the test set, and the fraction of samples in
which spglib (symprec 0.1) finds only P1.

Run (composition validity needs smact; uniqueness, novelty and density need pymatgen; coverage
needs matminer and is skipped by ``--quick``: ``pip install arjax[crystal]``; without them those
metrics print as nan)::

    python examples/crystals_mp20.py --quick                      # smoke run, about 30 s
    python examples/crystals_mp20.py --out runs/crystal           # default CPU run: about 25 min here
    python examples/crystals_mp20.py --steps 50000 --batch-size 256 --d-model 256 --layers 8 \\
        --samples 10000 --out runs/gpu                            # the longer run, for a GPU

Measured with the default CPU run (6000 steps × 64, d_model 64, 2 layers, 1000 samples each; RL
200 steps × 128; see ``docs/crystals.md``), binned / continuous / continuous+rl, and the continuous
model with ``--min-separation 0.5`` (cut): skeleton NLL 18.24 / 18.01 / 18.54 / 18.15 nats, structural
validity 90.5 / 92.9 / 97.6 / 100.0 %, SMACT 82.5 / 82.0 / 85.2 / 80.0 %, novelty 91.8 / 95.7 / 91.4 /
96.5 %, Wasserstein density 0.676 / 0.213 / 0.882 / 0.302 g/cm³, number of elements 0.282 / 0.317 /
0.171 / 0.288, COV-R 58.0 / 55.9 / 55.9 / 52.3 %, COV-P 48.3 / 45.3 / 59.4 / 43.2 %, P1 fraction
2.3 / 1.6 / 0.3 / 0.5 %. With ``--max-elements 3`` (the grammar caps distinct elements at the data's
three), three training seeds each, binned / cut: W number of elements 0.039 / 0.036 (uncapped 0.28 /
0.35), W density 0.684 / 0.474, structural validity 90.6 / 100.0 %, SMACT 81.1 / 80.4 %, novelty
90.8 / 95.3 %, P1 2.3 / 0.4 %.

The sampled rows are saved as ``--out``/samples-<model>.npy. Trained nets are saved in ``--out``
and reused by a later run with the same settings; ``fit_mle`` checkpoints every ``--log-every``
steps, so an interrupted run resumes.
"""

import argparse
import collections
import importlib.util
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from arjax.crystal import (
    CrystalEncoder,
    CrystalError,
    CrystalTokenizer,
    CrystalTransformer,
    load_mp20_biternary,
    metrics,
    parse_crystal,
    seeded_split,
    to_structure,
)
from arjax.crystal.design import FrozenSkeleton, sample_valid, validity_reward
from arjax.crystal.geometry import overlap_penalty
from arjax.crystal.skeleton import encoder_skeleton_log_prob, position_log_probs, tokenizer_skeleton_log_prob
from arjax.distribution import Autoregressive
from arjax.nn.transformer import Transformer
from arjax.train import fit_mle, fit_reward

KINDS = ("binned", "continuous", "continuous+rl", "conditioned")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, model, budget and sample count")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for nets, checkpoints, results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the 80/10/10 split")
    parser.add_argument("--max-sites", type=int, default=10)
    parser.add_argument("--max-atoms", type=int, default=48)
    parser.add_argument("--max-elements", type=int, default=None,
                        help="most distinct elements per crystal, a grammar cap for both models (default: none)")
    parser.add_argument("--min-separation", type=float, default=None,
                        help="cut the continuous model's scale below the smallest valid one (Å; default: no cut)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000, help="samples per model for the metrics")
    parser.add_argument("--is-samples", type=int, default=16, help="importance samples per test crystal (binned)")
    parser.add_argument("--log-every", type=int, default=250)
    parser.add_argument("--models", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--rl-steps", type=int, default=200, help="continuous+rl: fit_reward steps")
    parser.add_argument("--rl-batch", type=int, default=128)
    parser.add_argument("--rl-lr", type=float, default=1e-4)
    parser.add_argument("--rl-reward", choices=("validity", "overlap"), default="validity",
                        help="continuous+rl: validity (score-function gradient of a 0/-penalty reward) or overlap "
                             "(pathwise gradient of -penalty × overlap_penalty, Å²)")
    parser.add_argument("--rl-penalty", type=float, default=10.0,
                        help="reward -penalty for an invalid crystal (validity) or per Å² of overlap (overlap)")
    parser.add_argument("--rl-margin", type=float, default=0.1,
                        help="overlap: atoms closer than 0.5 Å + margin are pushed apart")
    parser.add_argument("--rl-kl-weight", type=float, default=1.0)
    parser.add_argument("--rl-frozen-skeleton", action="store_true",
                        help="continuous+rl: tune only the geometry conditionals (FrozenSkeleton)")
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))}; expected {', '.join(KINDS)}")
    if args.quick:
        args.steps, args.batch_size, args.d_model, args.layers, args.heads = 20, 32, 16, 1, 2
        args.samples, args.is_samples, args.log_every = 32, 2, 20
        args.rl_steps, args.rl_batch = 2, 8
    return args


# ----------------------------------------------------------------------------------------- data
def load_data(args):
    """Seeded split of the shipped corpus, vocabularies, and the rows both models can encode."""
    records = load_mp20_biternary()
    splits = dict(zip(("train", "val", "test"), seeded_split(records, (0.8, 0.1, 0.1), seed=args.split_seed)))
    if args.quick:
        splits = {"train": splits["train"][:200], "val": splits["val"][:20], "test": splits["test"][:40]}
    crystals = {name: [parse_crystal(r["crystal"]) for r in rows] for name, rows in splits.items()}
    every = [c for rows in crystals.values() for c in rows]
    lengths = [v for c in crystals["train"] for v in c.lattice[:3]]
    angles = [v for c in crystals["train"] for v in c.lattice[3:]]
    vocabulary = dict(space_groups=sorted({c.space_group for c in every}),
                      elements=sorted({s.element for c in every for s in c.sites}))  # fmt: skip
    caps = dict(max_sites=args.max_sites, max_atoms=args.max_atoms, max_elements=args.max_elements)
    encoder = CrystalEncoder(**vocabulary, **caps, min_separation=args.min_separation)
    tokenizer = CrystalTokenizer(**vocabulary, **caps, coordinate_bins=32,
                                 length_range=(min(lengths), max(lengths)), length_bins=101,
                                 angle_range=(min(angles), max(angles)), angle_bins=91)  # fmt: skip
    data, skipped = {}, collections.Counter()
    for name, rows in crystals.items():
        kept = []
        for record, crystal in zip(splits[name], rows):
            try:
                encoder.encode(crystal, name=record["material_id"])
                tokenizer.encode(crystal)
            except CrystalError as error:
                skipped[(name, error.kind)] += 1
                continue
            except ValueError as error:
                skipped[(name, "binned: " + str(error).split(" = ")[0].split(":")[-1].strip())] += 1
                continue
            kept.append((record, crystal))
        data[name] = kept
    return encoder, tokenizer, data, skipped


# -------------------------------------------------------------------------------------- models
def _layout(args) -> str:
    """The saved-net tag of the continuous encoding: scale last, γ on the cell interval, its cut and element cap."""
    return "-scalelast-gammacell" + ("" if args.min_separation is None else f"-cut{args.min_separation:g}") + _cap(args)


def _cap(args) -> str:
    return "" if args.max_elements is None else f"-e{args.max_elements}"


def train(kind, args, encoder, tokenizer, data, key, base_key=None):
    """A trained net of ``kind``, loaded from ``--out`` when a run with the same settings saved one.

    ``continuous+rl`` is the continuous net (trained with ``base_key``) fine-tuned by ``fine_tune``;
    ``conditioned`` is that continuous net itself (``draw`` conditions it on validity).
    """
    if kind == "conditioned":
        return train("continuous", args, encoder, tokenizer, data, base_key)
    if kind == "continuous+rl":
        net, base_info = train("continuous", args, encoder, tokenizer, data, base_key)
        net, info = fine_tune(net, args, encoder, len(data["train"]), key)
        return net, {"base": base_info, **info}
    k_net, k_fit = jax.random.split(key)
    size = dict(d_model=args.d_model, num_heads=args.heads, num_layers=args.layers)
    crystals = [c for _, c in data["train"]]
    if kind == "continuous":
        net = CrystalTransformer(encoder, **size, key=k_net)
        x, rule = jnp.asarray(encoder.encode_batch(crystals), jnp.float32), encoder.allowed
    else:
        net = Transformer(tokenizer.num_positions, tokenizer.num_categories, **size, key=k_net)
        x, rule = jnp.asarray(tokenizer.encode_batch(crystals)), tokenizer.allowed
    tag = f"{kind}{_layout(args) if kind == 'continuous' else _cap(args)}-s{args.steps}-b{args.batch_size}"
    tag += f"-d{args.d_model}"
    tag += f"-l{args.layers}-seed{args.seed}-n{len(crystals)}"
    path = args.out / f"{tag}.eqx"
    if path.exists():
        return eqx.tree_deserialise_leaves(path, net), {"loaded": str(path)}
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, max(1, args.steps // 20), args.steps, args.lr / 20)
    start = time.perf_counter()
    net, history = fit_mle(net, x, optimizer=optax.adam(schedule), batch_size=args.batch_size, key=k_fit,
                           num_steps=args.steps, allowed=rule, clip_grad=1.0, log_every=args.log_every,
                           checkpoint=args.out / f"{tag}.ckpt", progress=not args.quick)  # fmt: skip
    eqx.tree_serialise_leaves(path, net)
    return net, {"train_seconds": time.perf_counter() - start, "final_train_nll": float(np.asarray(history["nll"])[-1])}


def fine_tune(net, args, encoder, num_train: int, key):
    """RL toward validity: ``fit_reward``, reward ``-penalty`` for a structurally invalid crystal, KL toward ``net``.

    The optimum of ``E_q[r] - τ KL(q ‖ p)`` is ``p(x) e^{r(x)/τ} / Z``: the pretrained model with the
    mass of invalid crystals shrunk by ``e^{-penalty/τ}``, i.e. nearly ``p(x | valid)``. With
    ``--rl-frozen-skeleton`` only the geometry conditionals are tuned (``FrozenSkeleton``): the
    skeleton distribution stays the one learned from data and the optimum is
    ``p(s) p(g | s) e^{r(s, g)/τ} / Z(s)``.
    """
    frozen = "-frozen" if args.rl_frozen_skeleton else ""
    frozen += f"-overlap-m{args.rl_margin:g}" if args.rl_reward == "overlap" else ""
    tag = (f"continuous{_layout(args)}+rl{frozen}-s{args.steps}-b{args.batch_size}-d{args.d_model}-l{args.layers}"
           f"-seed{args.seed}-n{num_train}"
           f"-rl{args.rl_steps}x{args.rl_batch}-lr{args.rl_lr:g}-p{args.rl_penalty:g}-kl{args.rl_kl_weight:g}")
    path = args.out / f"{tag}.eqx"
    start_net = FrozenSkeleton(net, net) if args.rl_frozen_skeleton else net
    if path.exists():
        return eqx.tree_deserialise_leaves(path, start_net), {"loaded": str(path)}
    if args.rl_reward == "overlap":
        def reward(x):
            return -args.rl_penalty * overlap_penalty(encoder, x, margin=args.rl_margin)
    else:
        reward = validity_reward(encoder, penalty=args.rl_penalty)
    gradient = "pathwise" if args.rl_reward == "overlap" else "score"
    start = time.perf_counter()
    tuned, history = fit_reward(start_net, reward, prior=Autoregressive(net, allowed=encoder.allowed),
                                kl_weight=args.rl_kl_weight, optimizer=optax.adam(args.rl_lr), num_steps=args.rl_steps,
                                batch_size=args.rl_batch, key=key, clip_grad=1.0, gradient=gradient,
                                log_every=max(1, min(args.log_every, args.rl_steps // 10)),
                                checkpoint=args.out / f"{tag}.ckpt", progress=not args.quick)  # fmt: skip
    eqx.tree_serialise_leaves(path, tuned)
    penalty = -np.asarray(history["reward"]) / args.rl_penalty  # invalid fraction, or mean overlap (Å²)
    kl = float(np.asarray(history["kl"])[-1])
    name = "invalid" if args.rl_reward == "validity" else "overlap"
    return tuned, {"rl_seconds": time.perf_counter() - start, f"rl_{name}_first": float(penalty[0]),
                   f"rl_{name}_last": float(penalty[-1]), "rl_kl_last": kl}  # fmt: skip


def skeleton_nll(kind, net, encoder, tokenizer, rows, args, key) -> float:
    """Test NLL of the skeleton; not computed for ``conditioned`` (it needs ``P(valid | skeleton)`` per crystal)."""
    if kind == "conditioned":
        return float("nan")
    crystals = [c for _, c in rows]
    if kind != "binned":
        return -float(np.mean(encoder_skeleton_log_prob(net, encoder.encode_batch(crystals))))
    x = tokenizer.encode_batch(crystals)
    return -float(np.mean(tokenizer_skeleton_log_prob(net, tokenizer, x, key=key, num_samples=args.is_samples)))


def full_nll(kind, net, encoder, tokenizer, rows) -> float:
    """Test NLL of the whole sequence (nats; the continuous model's is a density, not comparable with tokens)."""
    crystals = [c for _, c in rows]
    if kind != "binned":
        x, rule = encoder.encode_batch(crystals), encoder.allowed
    else:
        x, rule = tokenizer.encode_batch(crystals), tokenizer.allowed
    return -float(np.mean(position_log_probs(net, x, rule).sum(axis=1)))


def draw(kind, net, encoder, tokenizer, count: int, key) -> tuple[list, np.ndarray, dict]:
    """``count`` samples decoded to crystals (``None`` where a sample does not decode), the sampled rows,
    and sampling statistics.

    ``conditioned`` draws ``p(x | structurally valid)`` exactly by rejection (``sample_valid``).
    """
    coder, rule = (tokenizer, tokenizer.allowed) if kind == "binned" else (encoder, encoder.allowed)
    model = Autoregressive(net, allowed=rule)
    if kind == "conditioned":
        out = sample_valid(model, key, count)
        rows = np.asarray(out.x)
        return [encoder.decode(row) for row in rows], rows, {"accepted": out.accepted, "drawn": out.drawn}
    size = min(250, count)
    chunks = [np.asarray(model.sample(k, (size,))) for k in jax.random.split(key, -(-count // size))]  # one compilation
    rows = np.concatenate(chunks)[:count]
    out = []
    for row in rows:
        try:
            out.append(coder.decode(row))
        except ValueError:
            out.append(None)
    return out, rows, {}


# ------------------------------------------------------------------------------------- metrics
HAVE = {name: importlib.util.find_spec(name) is not None for name in ("pymatgen", "smact", "matminer")}


def evaluate(samples, train_structures, test_structures, reference=None, scale=None, *, key) -> dict:
    """The metrics of ``samples``; those that need pymatgen, smact or matminer are NaN when it is not installed.

    The Wasserstein distances come with bootstrap standard errors (``key``), and the counts of
    distinct elements among decoded and valid samples with them. Coverage (with matminer) is against
    the test set's ``reference`` fingerprints, compositions standardised by the training set's
    (``scale``); samples that do not decode count as uncovered.
    """
    nan = float("nan")
    structures = [None if c is None else _structure(c) for c in samples]
    decoded = [s for s in structures if s is not None]
    structural = [metrics.structurally_valid(s) for s in decoded]
    composition = [metrics.compositionally_valid(s.species) for s in decoded] if HAVE["smact"] else None
    valid = [s for s, a, b in zip(decoded, structural, composition or structural) if a and b]
    n = len(samples)
    matcher = HAVE["pymatgen"] and bool(valid)
    out = {
        "samples": n,
        "decoded": len(decoded) / n,
        "structural_validity": sum(structural) / n,
        "composition_validity": nan if composition is None else sum(composition) / n,
        "validity": nan if composition is None else len(valid) / n,
        "uniqueness": metrics.uniqueness(valid) if matcher else nan,
        "novelty": metrics.novelty(valid, train_structures) if matcher else nan,
        "p1_fraction": metrics.p1_fraction(decoded),
        "generated_p1_fraction": float(np.mean([c.space_group == 1 for c in samples if c is not None])),
    }
    measures = [("num_elements", metrics.num_elements)] + ([("density", metrics.density)] if HAVE["pymatgen"] else [])
    for (name, fn), k in zip(measures if valid else (), jax.random.split(key, len(measures))):
        values, test_values = [fn(s) for s in valid], [fn(s) for s in test_structures]
        out[f"wasserstein_{name}"] = metrics.wasserstein(values, test_values)
        out[f"wasserstein_{name}_se"] = metrics.wasserstein_error(values, test_values, key=k) if len(valid) > 1 else nan
    out["num_elements_decoded"] = _counts(metrics.num_elements(s) for s in decoded)
    out["num_elements_valid"] = _counts(metrics.num_elements(s) for s in valid)
    out["num_elements_test"] = _counts(metrics.num_elements(s) for s in test_structures)
    if reference is not None and decoded:  # CrystalNN on 1000 crystals: minutes (skipped by --quick)
        out.update(metrics.coverage(metrics.fingerprints(decoded), reference, composition_scale=scale, num_generated=n))
    return out


def _counts(values) -> dict:
    return {str(k): v for k, v in sorted(collections.Counter(values).items())}


def _structure(crystal):
    try:
        return to_structure(crystal)
    except ValueError:  # a cell the lattice parameters cannot describe
        return None


ROWS = [
    ("test skeleton NLL (nats/crystal)", "skeleton_nll", "{:.3f}"),
    ("test NLL, whole sequence (nats)", "full_nll", "{:.3f}"),
    ("structural validity", "structural_validity", "{:.1%}"),
    ("composition validity (SMACT)", "composition_validity", "{:.1%}"),
    ("validity (both)", "validity", "{:.1%}"),
    ("uniqueness (valid)", "uniqueness", "{:.1%}"),
    ("novelty vs train (valid)", "novelty", "{:.1%}"),
    ("Wasserstein density (g/cm³)", "wasserstein_density", "{:.3f}"),
    ("  ± bootstrap s.e.", "wasserstein_density_se", "{:.3f}"),
    ("Wasserstein #elements", "wasserstein_num_elements", "{:.4f}"),
    ("  ± bootstrap s.e.", "wasserstein_num_elements_se", "{:.4f}"),
    ("COV-R (recall)", "cov_recall", "{:.1%}"),
    ("COV-P (precision)", "cov_precision", "{:.1%}"),
    ("P1 fraction (spglib, symprec 0.1)", "p1_fraction", "{:.1%}"),
    ("generated group P1", "generated_p1_fraction", "{:.1%}"),
    ("samples", "samples", "{}"),
]


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encoder, tokenizer, data, skipped = load_data(args)
    print(f"MP-20 binary/ternary, seeded 80/10/10 split (seed {args.split_seed}): "
          + ", ".join(f"{name} {len(rows)}" for name, rows in data.items()))
    print(f"  skipped: {dict(skipped) or 'none'}")
    print(f"  {encoder}\n  {tokenizer}")
    missing = [name for name, present in HAVE.items() if not present]
    if missing:
        print(f"  {', '.join(missing)} not installed (pip install arjax[crystal]): metrics that need them are nan")
    train_structures = [to_structure(c) for _, c in data["train"]]
    test_structures = [to_structure(c) for _, c in data["test"]]
    keys = dict(zip(("binned", "continuous"), jax.random.split(jax.random.key(args.seed), 2)))
    keys["continuous+rl"] = jax.random.fold_in(jax.random.key(args.seed), 2)
    keys["conditioned"] = jax.random.fold_in(jax.random.key(args.seed), 3)
    base_key = jax.random.split(keys["continuous"], 3)[0]
    if HAVE["matminer"] and not args.quick:
        t0 = time.perf_counter()
        reference = metrics.fingerprints(test_structures)
        scale = metrics.composition_fingerprints([s.species for s in train_structures])
        print(f"  fingerprints of the test set for coverage: {time.perf_counter() - t0:.0f} s")
    else:
        reference = scale = None
    results = {}
    for kind in args.models.split(","):
        k_train, k_nll, k_sample = jax.random.split(keys[kind], 3)
        t0 = time.perf_counter()
        net, info = train(kind, args, encoder, tokenizer, data, k_train, base_key)
        result = dict(info, skeleton_nll=skeleton_nll(kind, net, encoder, tokenizer, data["test"], args, k_nll),
                      full_nll=full_nll(kind, net, encoder, tokenizer, data["test"]))  # fmt: skip
        t1 = time.perf_counter()
        samples, rows, stats = draw(kind, net, encoder, tokenizer, args.samples, k_sample)
        result["sample_seconds"] = time.perf_counter() - t1
        np.save(args.out / f"samples-{kind}.npy", rows)
        if kind == "conditioned":  # ln p(x | valid) = ln p(x) - ln P(valid) for the (valid) test crystals
            result.update(stats, acceptance=stats["accepted"] / stats["drawn"])
            result["full_nll"] += float(np.log(result["acceptance"]))
        metrics_key = jax.random.fold_in(keys[kind], 7)
        result.update(evaluate(samples, train_structures, test_structures, reference, scale, key=metrics_key))
        result["seconds"] = time.perf_counter() - t0
        results[kind] = result
        print(f"[{kind}] {args.steps} steps × batch {args.batch_size}, d={args.d_model}, layers={args.layers}: "
              f"{result['seconds']:.0f} s (sampling {result['sample_seconds']:.0f} s)")
        (args.out / f"results-{kind}.json").write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "skipped": {f"{a}: {b}": n for (a, b), n in skipped.items()}, "result": result}, indent=1))  # fmt: skip
    for path in sorted(args.out.glob("results-*.json")):  # models run by earlier invocations into the same --out
        kind = path.stem.removeprefix("results-")
        saved = json.loads(path.read_text())
        if kind not in results and saved["args"]["steps"] == str(args.steps):
            results[kind] = saved["result"]
    print(f"\n{'':<36}" + "".join(f"{kind:>14}" for kind in results))
    for label, name, fmt in ROWS:
        print(f"{label:<36}" + "".join(f"{fmt.format(r.get(name, float('nan'))):>14}" for r in results.values()))
    for kind, r in results.items():
        if "num_elements_valid" in r:
            print(f"distinct elements [{kind}]: decoded {r['num_elements_decoded']}, valid {r['num_elements_valid']}, "
                  f"test {r['num_elements_test']}")  # fmt: skip
    print(f"\nresults: {args.out}/results-*.json, sampled rows: samples-*.npy")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
