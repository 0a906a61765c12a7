"""A net's constructor configuration as plain JSON, and the parameter-free skeleton it rebuilds.

``net_config(net)`` reads the configuration of an ``arjax.nn`` net from its fields — static sizes,
flags, an activation by its ``jax.nn`` name, the parameter dtype — and ``net_skeleton(config)``
builds the same net with ``eqx.filter_eval_shape`` (shapes and dtypes, no arrays), ready for
``eqx.tree_deserialise_leaves``. Only the classes registered here can be described, and only
activations from ``ACTIVATIONS``: a configuration names code, it never contains any.

To describe a new constructor argument, add it to the class's ``_*_config`` function below and,
when its JSON form is not what the constructor takes, add its decoder to ``_DECODERS``.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from arjax.families.layout import family_from_config
from arjax.nn import MADE, GatedPixelCNN, MeanField, PixelCNN, Transformer

__all__ = ["ACTIVATIONS", "net_config", "net_skeleton"]

ACTIVATIONS: dict[str, Callable] = {
    name: getattr(jax.nn, name)
    for name in ("celu", "elu", "gelu", "hard_sigmoid", "hard_silu", "hard_tanh", "leaky_relu", "log_sigmoid", "mish",
                 "relu", "relu6", "selu", "sigmoid", "silu", "soft_sign", "softplus", "sparse_plus", "squareplus",
                 "tanh")  # fmt: skip
    if hasattr(jax.nn, name)
}
"""The activations a configuration may name: ``jax.nn`` functions, by their name there."""


def net_config(net: eqx.Module) -> dict:
    """``{"class": "arjax.nn.<Name>", "config": {...}}`` of a net of ``arjax.nn``, JSON-serialisable.

    >>> import jax
    >>> net_config(MADE(4, 3, width=8, depth=1, key=jax.random.key(0)))["config"]["activation"]
    'gelu'
    """
    for name, (cls, config) in _NETS.items():
        if type(net) is cls:
            return {"class": name, "config": config(net)}
    raise TypeError(
        f"only the nets of arjax.nn ({', '.join(cls.__name__ for cls, _ in _NETS.values())}) can be described by "
        f"their configuration, got {type(net).__module__}.{type(net).__qualname__}; save another net's parameters "
        "with equinox.tree_serialise_leaves and rebuild it yourself"
    )


def net_skeleton(description: dict) -> eqx.Module:
    """The net a ``net_config`` describes, with ``jax.ShapeDtypeStruct`` in place of its arrays.

    Raises:
        ValueError: the description names an unknown class or activation, or its configuration
            does not fit the class's constructor.

    >>> import jax
    >>> skeleton = net_skeleton(net_config(MeanField(3, 2, key=jax.random.key(0))))
    >>> skeleton.logits
    ShapeDtypeStruct(shape=(3, 2), dtype=float32)
    """
    name = description.get("class")
    if name not in _NETS:
        raise ValueError(f"unknown net class {name!r}; this arjax knows {', '.join(_NETS)}")
    config = {**_WRITTEN_BEFORE.get(name, {}), **description.get("config", {})}
    for key, decode in _DECODERS.items():
        if key in config:
            config[key] = decode(config[key])
    try:
        return eqx.filter_eval_shape(_NETS[name][0], **config, key=jax.random.key(0))
    except (TypeError, ValueError) as error:
        raise ValueError(f"the configuration {description['config']} does not build a {name}: {error}") from error


def _made_config(net: MADE) -> dict:
    return dict(num_positions=net.num_positions, **_values(net), width=net.width, depth=net.depth,
                residual=net.residual, activation=_activation_name(net.activation), context_size=_context_size(net),
                dtype=_dtype_name(net), hidden_order=net.hidden_order)  # fmt: skip


def _mean_field_config(net: MeanField) -> dict:
    return dict(num_positions=net.num_positions, num_categories=net.num_categories, context_size=_context_size(net),
                dtype=_dtype_name(net))  # fmt: skip


def _pixelcnn_config(net: PixelCNN) -> dict:
    return dict(L=net.L, num_categories=net.num_categories, depth=net.depth, width=net.width,
                half_kernel=net.half_kernel, residual=net.residual, padding=net.padding, final_conv=net.final_conv,
                dtype=_dtype_name(net))  # fmt: skip


def _gated_pixelcnn_config(net: GatedPixelCNN) -> dict:
    return dict(L=net.L, num_categories=net.num_categories, depth=net.depth, width=net.width,
                half_kernel=net.half_kernel, dtype=_dtype_name(net))  # fmt: skip


def _transformer_config(net: Transformer) -> dict:
    mlp_ratio = net.blocks[0].up_weight.shape[1] // net.d_model
    return dict(num_positions=net.num_positions, **_values(net), d_model=net.d_model,
                num_heads=net.num_heads, num_layers=net.num_layers, mlp_ratio=mlp_ratio,
                context_size=_context_size(net), dtype=_dtype_name(net))  # fmt: skip


# What a configuration written before a constructor argument existed meant by leaving it out.
_WRITTEN_BEFORE: dict[str, dict] = {"arjax.nn.MADE": {"hidden_order": "cyclic"}}

_NETS: dict[str, tuple[type, Callable[[eqx.Module], dict]]] = {
    "arjax.nn.MADE": (MADE, _made_config),
    "arjax.nn.MeanField": (MeanField, _mean_field_config),
    "arjax.nn.PixelCNN": (PixelCNN, _pixelcnn_config),
    "arjax.nn.GatedPixelCNN": (GatedPixelCNN, _gated_pixelcnn_config),
    "arjax.nn.Transformer": (Transformer, _transformer_config),
}


def _activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; a configuration may name one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _families(configs: list[dict]) -> tuple:
    return tuple(family_from_config(config) for config in configs)


_DECODERS: dict[str, Callable] = {"activation": _activation, "dtype": jnp.dtype, "families": _families}
"""JSON value → constructor argument, for the configuration keys whose two forms differ."""


def _activation_name(activation: Callable) -> str:
    for name, function in ACTIVATIONS.items():
        if activation is function:
            return name
    raise ValueError(
        f"the net's activation {activation!r} is not one of the jax.nn functions a configuration may name "
        f"({', '.join(sorted(ACTIVATIONS))}); code is never stored, so nets with other activations cannot be described"
    )


def _values(net) -> dict:
    """``num_categories=K`` of a token net, else ``families`` as a list of ``Family.config()``."""
    if net.num_categories is not None:
        return {"num_categories": net.num_categories}
    return {"families": [family.config() for family in net.families]}


def _context_size(net) -> int | None:
    return None if net.context_shape is None else net.context_shape[0]


def _dtype_name(net) -> str:
    return jax.tree_util.tree_leaves(eqx.filter(net, eqx.is_inexact_array))[0].dtype.name
