"""Learn binarised 8×8 handwritten digits by maximum likelihood: mean field vs MADE vs PixelCNN.

The data are scikit-learn's bundled copy of the UCI optical-digits test set
(``sklearn.datasets.load_digits``: 1797 images of 8×8 pixels with grey levels 0…16), binarised as
pixel ≥ 8 and flattened in raster order to sequences of N = 64 tokens in {0, 1}. A seeded shuffle
splits them into train / validation / test (default 70 / 10 / 20 %). Each net is fitted with
``arjax.train.fit_mle`` (Adam, shuffled minibatches); the validation NLL is computed every
``--log-every`` steps and the parameters with the lowest one are kept (early stopping). The table
reports the exact test NLL in nats per image, -mean ln q(x) over the test images, which
every ``arjax`` net gives exactly (no bound, no estimate), and bits per pixel.

Nets: ``meanfield`` (independent pixels: the baseline), ``made`` (MADE, depth 2), ``pixelcnn``
(masked convolutions on the 8×8 lattice, ``PixelCNN(L=8)``). A figure shows test images beside
exact samples of each net.

Measured with the defaults (seed 0, 2-core CPU at load ≈ 12, 1220 s in all): test NLL 25.30
(mean field, still improving at step 3000), 18.07 (MADE width 256, best at step 400) and 17.38
(PixelCNN depth 4, width 32, residual, best at step 300) nats per image; 64 ln 2 = 44.36.

Run:
    python examples/digits.py --quick     # a smoke run (tens of seconds)
    python examples/digits.py             # the default budget (a few minutes on a 2-core CPU)

Needs scikit-learn (an example-only dependency).
"""

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import optax

import arjax
from arjax.nn import MADE, MeanField, PixelCNN
from arjax.train import evaluate_nll, fit_mle

NETS = ("meanfield", "made", "pixelcnn")
L = 8


def load_binary_digits(threshold: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Binarised digits ``[1797, 64]`` (int32, pixel ≥ threshold) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data >= threshold).astype(np.int32), digits.target


def split(data: np.ndarray, seed: int, valid_fraction: float, test_fraction: float):
    """A seeded shuffle split into (train, valid, test)."""
    order = np.random.default_rng(seed).permutation(len(data))
    n_test, n_valid = round(test_fraction * len(data)), round(valid_fraction * len(data))
    test, valid, train = np.split(data[order], [n_test, n_test + n_valid])
    return train, valid, test


def make_net(name: str, args, key):
    n = L * L
    if name == "meanfield":
        return MeanField(n, 2, key=key)
    if name == "made":
        return MADE(n, 2, width=args.made_width, depth=2, key=key)
    if name == "pixelcnn":
        return PixelCNN(L, 2, depth=args.pixelcnn_depth, width=args.pixelcnn_width, half_kernel=3, residual=True,
                        key=key)  # fmt: skip
    raise ValueError(f"unknown net {name!r}; choose from {NETS}")


def fit_early_stopping(net, train, valid, *, args, key):
    """``fit_mle`` for ``args.steps`` steps, keeping the parameters with the lowest validation NLL."""
    best = dict(nll=np.inf, net=net, step=0)

    def keep_best(step, net, metrics):
        if metrics["eval_nll"] < best["nll"]:
            best.update(nll=float(metrics["eval_nll"]), net=net, step=step)
        return step - best["step"] >= args.patience  # stop after `patience` steps without improvement

    _, history = fit_mle(net, train, optimizer=optax.adam(args.lr), batch_size=args.batch_size, key=key,
                         num_steps=args.steps, eval_data=valid, log_every=args.log_every, progress=args.progress,
                         callback=keep_best)  # fmt: skip
    return best["net"], best["step"], history


def run(args):
    data, _ = load_binary_digits()
    train, valid, test = split(data, args.seed, args.valid_fraction, args.test_fraction)
    print(f"binarised digits: {len(train)} train, {len(valid)} valid, {len(test)} test images of {L}×{L} pixels; "
          f"Adam lr {args.lr:g}, batch {args.batch_size}, ≤ {args.steps} steps, early stopping on the valid NLL")
    print(f"{'net':<10}{'params':>9}{'test NLL':>11}{'bits/px':>9}{'train NLL':>11}{'best step':>11}{'time':>8}")
    root = jax.random.key(args.seed)
    rows, samples = [], {}
    for i, name in enumerate(args.nets):
        init_key, fit_key, sample_key = jax.random.split(jax.random.fold_in(root, i), 3)
        start = time.perf_counter()
        net = make_net(name, args, init_key)
        net, best_step, _ = fit_early_stopping(net, train, valid, args=args, key=fit_key)
        row = dict(net=name, params=count_params(net), test=evaluate_nll(net, test), train=evaluate_nll(net, train),
                   step=best_step, time=time.perf_counter() - start)  # fmt: skip
        rows.append(row)
        samples[name] = np.asarray(arjax.Autoregressive(net).sample(sample_key, (args.grid**2,)))
        print(f"{name:<10}{row['params']:>9d}{row['test']:>11.3f}{row['test'] / (L * L * np.log(2)):>9.4f}"
              f"{row['train']:>11.3f}{best_step:>11d}{row['time']:>7.1f}s", flush=True)
    return rows, test, samples


def count_params(net) -> int:
    import equinox as eqx

    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array)))


def plot(test, samples, rows, args, path: Path):
    """One panel of ``grid × grid`` images per source: test data, then each net's exact samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("test data", test[: args.grid**2])]
    panels += [(f"{r['net']} samples\ntest NLL {r['test']:.1f} nats", samples[r["net"]]) for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), layout="constrained")
    for ax, (title, images) in zip(np.atleast_1d(axes), panels):
        ax.imshow(mosaic(images, args.grid), cmap="gray_r", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mosaic(images: np.ndarray, grid: int, gap: int = 1) -> np.ndarray:
    """Tile up to ``grid²`` flattened 8×8 images into one array, with light separating lines."""
    canvas = np.full((grid * (L + gap) - gap, grid * (L + gap) - gap), 0.15)
    for k, image in enumerate(images[: grid * grid]):
        r, c = divmod(k, grid)
        canvas[r * (L + gap) : r * (L + gap) + L, c * (L + gap) : c * (L + gap) + L] = image.reshape(L, L)
    return canvas


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 150 steps, small MADE (width 64) and PixelCNN (depth 2, width 16)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="directory for the figure (default out/)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, the nets and the minibatches")
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    parser.add_argument("--steps", type=int, default=3000, help="most Adam steps per net")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--log-every", type=int, default=50, help="steps between validation NLLs")
    parser.add_argument("--patience", type=int, default=500, help="stop after this many steps without a better "
                        "validation NLL")  # fmt: skip
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--made-width", type=int, default=256)
    parser.add_argument("--pixelcnn-depth", type=int, default=4)
    parser.add_argument("--pixelcnn-width", type=int, default=32)
    parser.add_argument("--grid", type=int, default=6, help="the figure shows grid × grid images per panel")
    parser.add_argument("--progress", action="store_true", help="show a progress bar while training")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.log_every, args.patience = 150, 50, 150
        args.made_width, args.pixelcnn_depth, args.pixelcnn_width = 64, 2, 16
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows, test, samples = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "digits_samples.png"
    plot(test, samples, rows, args, path)
    print("NLL in nats per image (64 binary pixels); 64 ln 2 = 44.36 is the uniform distribution.")
    print(f"samples: {path}")
    print(f"total time: {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
