"""Any timm model by name, built for the data set's number of classes and input channels."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labelsmooth.errors import ConfigurationError, MissingFileError, first_line
from labelsmooth.models.resnet import check_bn_momentum


def timm_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int | Sequence[int] | None = None,
    pretrained: bool | str | None = False,
    pass_image_size: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, num_classes=K, in_chans=C, **model_kwargs)``.

    ``pretrained`` is off by default and may only name a local weights file (``.pth``/``.safetensors``): nothing is
    fetched from a hub; every weight of the file must fit (``load_local_weights``), its first convolution adapted to
    ``in_channels`` and its classifier left out when the number of classes differs. ``pass_image_size`` passes
    ``img_size`` (for models such as ViTs whose shape depends on it). Like the networks of this package, a timm
    model offers its penultimate features (N, D) as ``forward_head(forward_features(x), pre_logits=True)`` and its
    last layer as ``get_classifier()``.
    """
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        similar = f" (close: {', '.join(close)})" if close else ""
        raise ConfigurationError(
            f"model.name={name!r} is not a timm architecture{similar}; timm.list_models('*pattern*') lists them "
            "(names from a hub, hf-hub:..., are not fetched)"
        )
    if "bn_momentum" in model_kwargs:  # the models of timm that take it do not check it
        check_bn_momentum(model_kwargs["bn_momentum"])
    if pass_image_size and image_size is not None:
        model_kwargs["img_size"] = image_size if isinstance(image_size, int) else tuple(image_size)
    if pretrained is True or (isinstance(pretrained, str) and pretrained.lower() in {"true", "hub", "yes"}):
        raise ConfigurationError(
            "model.pretrained=true would fetch weights from a hub, which this project never does: set "
            "model.pretrained=/path/to/weights.pth (or .safetensors) to start from a local file, or false"
        )
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **model_kwargs)
    weights = Path(pretrained).expanduser()
    if not weights.is_file():
        raise MissingFileError(f"model.pretrained={pretrained}: no such weights file")
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **model_kwargs)
    if torch.get_default_device().type != "meta":  # on the meta device, a check of the shapes alone
        load_local_weights(net, weights, name)
    return net


def load_local_weights(net: nn.Module, path: Path, name: str) -> None:
    """The weights of the file ``path`` into the timm model ``net``, every one of them or a ``ConfigurationError``:
    a timm ``state_dict`` (``.pth`` or ``.safetensors``, loaded as weights only), or a checkpoint of this project
    (its network's weights, ``net.*``). The first convolution is adapted to ``net``'s input channels (timm's
    ``adapt_input_conv``) and a classifier of another number of classes is left as ``net`` initialised it. Written
    here because timm's own loading of a local file is lenient: with a number of classes other than its default it
    loads with ``strict=False``, so a file of another architecture trained nothing of it, without a word."""
    from timm.models import adapt_input_conv, load_state_dict

    where = f"model.pretrained={path}"
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception as error:  # torch and safetensors raise several types for what they cannot read
        raise ConfigurationError(f"{where} is not a readable weights file ({first_line(error)})") from None
    if any(key.startswith("net.") for key in state):  # a checkpoint of this project: its network's weights
        state = {key[len("net.") :]: value for key, value in state.items() if key.startswith("net.")}
    expected, config = net.state_dict(), getattr(net, "pretrained_cfg", {}) or {}
    first = f"{config.get('first_conv')}.weight"
    if first in state and first in expected and state[first].shape[1] != expected[first].shape[1]:
        state[first] = adapt_input_conv(expected[first].shape[1], state[first])
    heads = config.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    head_keys = {f"{head}.{kind}" for head in heads for kind in ("weight", "bias")}
    state = {k: v for k, v in state.items() if not (k in head_keys and k in expected and v.shape != expected[k].shape)}
    missing = [k for k in expected if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in state
                if k in expected and state[k].shape != expected[k].shape]  # fmt: skip
    if missing or unexpected or reshaped:
        kinds = (("missing", missing), ("not in the model", unexpected), ("of another shape", reshaped))
        problems = [f"{len(found)} {what}, e.g. {found[0]}" for what, found in kinds if found]
        raise ConfigurationError(
            f"{where}: its weights do not fit timm's {name} ({'; '.join(problems)}): give a file of this "
            "architecture (its classifier may have another number of classes)"
        )
    net.load_state_dict(state, strict=False)  # strict but for a classifier left as initialised
