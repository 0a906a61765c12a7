"""``arjax.save`` / ``arjax.load``: nets and ``Autoregressive`` round-trip bit for bit; damaged files are refused."""

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TableNet

import arjax
from arjax import Autoregressive, ModelFileError
from arjax.families import Categorical, LogNormalMixture, VonMisesMixture
from arjax.nn import MADE, GatedPixelCNN, MeanField, PixelCNN, Transformer

DATA = Path(__file__).with_name("data")
FAMILIES = (Categorical(3), VonMisesMixture(2, num_frequencies=2), LogNormalMixture(1, scale_floor=0.01))
KEY = jax.random.key(0)
NETS = {
    "made": lambda: MADE(5, 3, width=8, depth=2, residual=True, activation=jax.nn.relu, context_size=2, key=KEY),
    "mean_field": lambda: MeanField(4, 3, context_size=2, key=KEY),
    "pixelcnn": lambda: PixelCNN(3, 2, depth=3, width=4, half_kernel=1, residual=True, padding="periodic",
                                 final_conv=False, key=KEY),  # fmt: skip
    "gated_pixelcnn": lambda: GatedPixelCNN(3, 3, depth=2, width=4, key=KEY),
    "transformer": lambda: Transformer(4, 3, d_model=8, num_heads=2, num_layers=1, mlp_ratio=2, context_size=2,
                                       key=KEY),  # fmt: skip
    "made_families": lambda: MADE(3, families=FAMILIES, width=8, depth=1, key=KEY),
    "transformer_families": lambda: Transformer(3, families=FAMILIES, d_model=8, num_heads=2, num_layers=1, key=KEY),
}


def assert_bit_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)  # class and static configuration
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert type(x) is type(y) and np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", NETS)
def test_every_net_round_trips_bit_identically(name, tmp_path):
    net = NETS[name]()
    arjax.save(tmp_path / "net.arjax", net)
    assert_bit_identical(arjax.load(tmp_path / "net.arjax"), net)


def test_an_autoregressive_round_trips_with_its_context_and_allowed_table(tmp_path):
    allowed = jnp.array([[True, False, True]] + [[True, True, True]] * 3 + [[False, True, True]])
    prior = Autoregressive(NETS["made"](), context=jnp.array([[0.5, -1.0], [2.0, 0.0]]), allowed=allowed)
    arjax.save(tmp_path / "prior.arjax", prior)
    loaded = arjax.load(tmp_path / "prior.arjax")
    assert isinstance(loaded, Autoregressive) and loaded.batch_shape == (2,)
    assert_bit_identical(loaded, prior)
    x = jnp.array([[1, 1, 2, 0, 1], [2, 0, 0, 1, 2]])
    log_p = loaded.log_prob(x)
    np.testing.assert_array_equal(log_p, prior.log_prob(x))
    assert np.isneginf(log_p[0]) and np.isfinite(log_p[1])  # token 1 is disallowed at position 0


def test_float64_round_trips_and_is_refused_without_x64(tmp_path):
    with jax.enable_x64(True):
        net = MeanField(3, 2, dtype=jnp.float64, key=KEY)
        arjax.save(tmp_path / "net64.arjax", net)
        loaded = arjax.load(tmp_path / "net64.arjax")
        assert loaded.logits.dtype == jnp.float64
        assert_bit_identical(loaded, net)
    with pytest.raises(ModelFileError, match=r"holds float64 arrays, which JAX would round to 32 bits"):
        arjax.load(tmp_path / "net64.arjax")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "net.arjax"
    arjax.save(path, MeanField(3, 2, key=KEY))
    return path.read_bytes()


def _rewritten(raw: bytes, header: bytes) -> bytes:
    """``raw``'s payload under a new header line, sealed with a valid length and SHA-256."""
    payload = raw.partition(b"\n")[2]
    return header + b" %d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode()) + payload


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) - 10], r"is truncated: its payload has \d+ of \d+ bytes"),
        (lambda raw: raw.replace(b'"num_positions": 3', b'"num_positions": 4'), "is corrupted: the SHA-256"),
        (lambda raw: raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:], "is corrupted: the SHA-256"),
        (lambda raw: raw + b"\0", r"is corrupted: its payload has \d+ bytes, its header says"),
        (lambda raw: b"PK\3\4 not a model", "is not an arjax model file"),
        (lambda raw: _rewritten(raw, b"arjax-model v2"), r"format v2, but this arjax reads v1 \(a newer arjax"),
        (lambda raw: _rewritten(raw.replace(b'"num_positions": 3', b'"num_positions": 4'), b"arjax-model v1"),
         "arrays that do not fit the configuration in its header"),
        (lambda raw: _rewritten(raw.replace(b"arjax.nn.MeanField", b"arjax.nn.MeanFeld"), b"arjax-model v1"),
         "unknown net class 'arjax.nn.MeanFeld'"),
    ],
    ids=["truncated", "header-byte", "array-byte", "extra-byte", "foreign", "newer-version", "wrong-config",
         "unknown-class"],
)
def test_a_damaged_or_foreign_file_is_refused(saved, tmp_path, damage, message):
    path = tmp_path / "net.arjax"
    path.write_bytes(damage(saved))
    with pytest.raises(ModelFileError, match=f"{path}.*{message}"):
        arjax.load(path)


def test_what_would_need_code_is_refused(tmp_path):
    path = tmp_path / "x.arjax"
    rule = Autoregressive(MeanField(3, 2, key=KEY), allowed=lambda x, i: jnp.array([True, i > 0]))
    with pytest.raises(ValueError, match="allowed is a Python function"):
        arjax.save(path, rule)
    with pytest.raises(ValueError, match="activation .* is not one of the jax.nn functions"):
        arjax.save(path, MADE(3, 2, width=4, depth=1, activation=lambda h: h**2, key=KEY))
    with pytest.raises(TypeError, match="only the nets of arjax.nn"):
        arjax.save(path, TableNet(jnp.zeros(8), 3, 2))
    with pytest.raises(TypeError, match="model must be a net of arjax.nn or an arjax.Autoregressive"):
        arjax.save(path, {"logits": jnp.zeros(3)})
    assert not path.exists() and not list(tmp_path.iterdir())


def test_files_of_format_1_keep_loading():
    """Files written by arjax 0.1.0 (format v1), checked in. Made with ``arjax.save`` of

    ``Autoregressive(MADE(4, 3, width=8, depth=1, context_size=2, key=jax.random.key(0)), context=[0.5, -1.0],
    allowed=ALLOWED)`` and of ``Transformer(num_positions=3, num_categories=2, d_model=8, num_heads=2, num_layers=1,
    mlp_ratio=2, key=jax.random.key(1))``; the log-probabilities below are theirs, as computed then.
    """
    prior = arjax.load(DATA / "model_v1_made.arjax")
    header = json.loads((DATA / "model_v1_made.arjax").read_bytes().split(b"\n")[1])
    assert header["format"] == 1 and header["net"]["config"]["width"] == 8
    assert isinstance(prior.net, MADE) and prior.net.context_shape == (2,) and prior.net.activation is jax.nn.gelu
    np.testing.assert_array_equal(prior.context, [0.5, -1.0])
    np.testing.assert_array_equal(prior.allowed.table, [[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 1, 1]])
    x = jnp.array([[0, 1, 2, 0], [1, 2, 1, 1], [1, 0, 2, 2], [2, 0, 0, 0]])
    expected = [-4.776014804840088, -3.177091598510742, -6.715447425842285, -np.inf]
    np.testing.assert_allclose(prior.log_prob(x), expected, rtol=1e-5)
    transformer = arjax.load(DATA / "model_v1_transformer.arjax")
    assert isinstance(transformer, Transformer) and (transformer.d_model, transformer.num_layers) == (8, 1)
    y = jnp.array([[0, 1, 1], [1, 0, 0], [1, 1, 1]])
    expected = [-2.0529284477233887, -2.111483573913574, -2.170527458190918]
    np.testing.assert_allclose(Autoregressive(transformer).log_prob(y), expected, rtol=1e-5)
