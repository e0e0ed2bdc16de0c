"""Any timm model by name, built for the data set's number of classes and input channels."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labelsmooth.errors import ConfigurationError, MissingFileError


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

    ``pretrained`` is off by default and may only name a local weights file (``.pth``/``.safetensors``): nothing
    is fetched from a hub. timm adapts the file's first convolution to ``in_channels`` and drops its classifier
    when the number of classes differs. ``pass_image_size`` passes ``img_size`` (for models such as ViTs whose
    shape depends on it). Like the networks of this package, a timm model offers its penultimate features (N, D)
    as ``forward_head(forward_features(x), pre_logits=True)`` and its last layer as ``get_classifier()``.
    """
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        similar = f" (close: {', '.join(close)})" if close else ""
        raise ConfigurationError(
            f"model.name={name!r} is not a timm architecture{similar}; timm.list_models('*pattern*') lists them "
            "(names from a hub, hf-hub:..., are not fetched)"
        )
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
    if torch.get_default_device().type == "meta":  # a check of the shapes alone: the file is not read
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **model_kwargs)
    return timm.create_model(
        name,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(weights), "hf_hub_id": None, "url": None},
        num_classes=num_classes,
        in_chans=in_channels,
        **model_kwargs,
    )
