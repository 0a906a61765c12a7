"""Model files: a trained net or ``Autoregressive`` in one self-describing file, ``arjax.save`` / ``arjax.load``.

A model file is a sealed file (``arjax.sealed``: written atomically, with its length and SHA-256
in a text header line ``arjax-model v1 …``). Its payload is one line of JSON, then the arrays as
``eqx.tree_serialise_leaves`` writes them. The JSON names the net's class and its constructor
configuration (``arjax.net_config``), and for an ``Autoregressive`` the shape and dtype of its
context and whether it has an allowed-token table, so ``load`` rebuilds the skeleton itself::

    arjax-model v1 <payload bytes> <payload sha256>
    {"format": 1, "arjax": "0.1.0", "model": "Autoregressive", "net": {"class": "arjax.nn.MADE", "config": {…}}, …}
    <arrays>

No code is stored or unpickled: classes come from a fixed registry, activations from an
allow-list of ``jax.nn`` names, and an ``allowed`` rule that is a Python function is refused.
"""

import io
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import arjax
from arjax.allowed import AllowedTable
from arjax.distribution import Autoregressive
from arjax.net_config import net_config, net_skeleton
from arjax.sealed import read_sealed, write_sealed

__all__ = ["save", "load", "ModelFileError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
"""The format ``save`` writes; ``load`` reads this one and every earlier one."""

_KIND = "model"


class ModelFileError(ValueError):
    """A model file is not one, is truncated or corrupted, is of a newer format, or does not fit its header."""


def save(path: str | os.PathLike, model: eqx.Module | Autoregressive) -> None:
    """Write a net of ``arjax.nn`` or an ``Autoregressive`` over one to ``path``, atomically.

    The file holds the class, its constructor configuration and every array (parameters,
    context, allowed-token table), bit for bit; ``arjax.load(path)`` needs nothing else.
    ``validate_args`` is a checking preference of the session, not part of the model: it is not
    stored, and a loaded ``Autoregressive`` takes NumPyro's default.

    Raises:
        TypeError: ``model`` is not a net of ``arjax.nn`` or an ``Autoregressive`` over one.
        ValueError: the net's activation is not a ``jax.nn`` function, or the ``Autoregressive``'s
            ``allowed`` is a Python function (code is never stored).

    Example:
        >>> import jax, json, os, tempfile
        >>> from arjax.nn import MADE
        >>> path = os.path.join(tempfile.mkdtemp(), "prior.arjax")
        >>> prior = arjax.Autoregressive(MADE(num_positions=4, num_categories=3, width=8, key=jax.random.key(0)))
        >>> save(path, prior)
        >>> header = json.loads(open(path, "rb").read().split(b"\\n")[1])   # plain JSON, after the header line
        >>> header["model"], header["net"]["class"], header["net"]["config"]["width"]
        ('Autoregressive', 'arjax.nn.MADE', 8)
        >>> x = prior.sample(jax.random.key(1), (5,))
        >>> bool((load(path).log_prob(x) == prior.log_prob(x)).all())
        True
    """
    if isinstance(model, Autoregressive):
        header, arrays = _distribution_header(model), (model.net, model.context, _table(model))
    elif isinstance(model, eqx.Module):
        header, arrays = {"model": "net", "net": net_config(model)}, model
    else:
        raise TypeError(f"model must be a net of arjax.nn or an arjax.Autoregressive, got {type(model).__name__}")
    buffer = io.BytesIO()
    buffer.write(json.dumps({"format": FORMAT_VERSION, "arjax": arjax.__version__, **header}).encode() + b"\n")
    eqx.tree_serialise_leaves(buffer, arrays)
    write_sealed(path, _KIND, FORMAT_VERSION, buffer.getvalue())


def load(path: str | os.PathLike) -> eqx.Module | Autoregressive:
    """The net or ``Autoregressive`` that ``arjax.save`` wrote to ``path``, bit-identical.

    Raises:
        ModelFileError: the file is not a model file, is truncated or corrupted (its length or
            SHA-256 differ from its header), was written in a newer format, names an unknown class
            or activation, holds float64 arrays while ``jax_enable_x64`` is off, or its arrays do
            not fit its configuration.

    Example:
        >>> import jax, os, tempfile
        >>> from arjax.nn import MeanField
        >>> path = os.path.join(tempfile.mkdtemp(), "net.arjax")
        >>> save(path, MeanField(3, 2, key=jax.random.key(0)))
        >>> load(path).logits.shape
        (3, 2)
    """
    _, payload = read_sealed(path, _KIND, tuple(range(1, FORMAT_VERSION + 1)), ModelFileError)
    line, _, arrays = payload.partition(b"\n")
    try:
        header = json.loads(line)
        _check_dtypes(path, header)
        net = net_skeleton(header["net"])
        if header["model"] == "net":
            like = net
        elif header["model"] == "Autoregressive":
            context, table = header["context"], header["allowed"]
            like = (net, None if context is None else _like(context), None if table is None else _like(table))
        else:
            raise ValueError(f"unknown model kind {header['model']!r}")
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"{path} has a header this arjax cannot read: {error!r}") from error
    try:
        loaded = eqx.tree_deserialise_leaves(io.BytesIO(arrays), like)
    except (RuntimeError, ValueError, TypeError, OSError) as error:
        raise ModelFileError(f"{path} holds arrays that do not fit the configuration in its header: {error}") from error
    if header["model"] == "net":
        return loaded
    net, context, table = loaded
    return Autoregressive(net, context, table)


def _distribution_header(model: Autoregressive) -> dict:
    context = None if model.context is None else _describe(model.context)
    table = _table(model)
    return {"model": "Autoregressive", "net": net_config(model.net), "context": context,
            "allowed": None if table is None else _describe(table)}


def _table(model: Autoregressive):
    if model.allowed is None:
        return None
    if isinstance(model.allowed, AllowedTable):
        return model.allowed.table
    raise ValueError(
        "cannot save an Autoregressive whose allowed is a Python function (model files store no code); save "
        "its net with arjax.save(path, model.net) and rebuild Autoregressive(arjax.load(path), allowed=rule)"
    )


def _describe(array) -> dict:
    return {"shape": list(np.shape(array)), "dtype": jnp.asarray(array).dtype.name}


def _like(description: dict) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(description["shape"]), jnp.dtype(description["dtype"]))


def _check_dtypes(path, header: dict) -> None:
    named = [header["net"]["config"].get("dtype"), (header.get("context") or {}).get("dtype")]
    wide = {name for name in named if name is not None and jnp.dtype(name).itemsize == 8}
    if wide and not jax.config.jax_enable_x64:
        raise ModelFileError(
            f"{path} holds {', '.join(sorted(wide))} arrays, which JAX would round to 32 bits: enable them first with "
            "jax.config.update('jax_enable_x64', True)"
        )
