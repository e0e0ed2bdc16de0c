"""The network checked before the data: built on PyTorch's meta device (shapes, no memory, no initialisation) for
the input shape the data set config declares, and given a zero batch, so an unknown architecture, a setting the
model does not take, inputs it cannot accept or weights larger than the machine's memory fail in one line before a
download."""

from __future__ import annotations

import os
import re
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from labelsmooth.errors import ConfigurationError, describe


def check_model_accepts(net: Any, image_shape: tuple[int, ...], num_classes: int | None, settings: str = "") -> None:
    """Pass a zero batch of ``image_shape`` (C, H, W) through ``net`` on its device (the meta device computes shapes
    alone) and refuse, in one line, inputs it cannot take or an output that is not ``num_classes`` (None: any);
    ``settings``: the model's settings, named when one of them fails the batch (``model_settings``)."""
    import torch

    from labelsmooth.errors import first_line

    shape = (2, *image_shape)
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(shape, device=device))
    except (RuntimeError, ValueError, AssertionError) as error:  # timm asserts the input size of its ViTs
        fixed_size = " (a timm model built for one input size, such as a ViT: model.pass_image_size=true)"
        if not any(word in str(error).lower() for word in ("size", "shape", "dimension", "match", "channel")):
            raise ConfigurationError(  # a setting of the model, not the input: dropout of 2, say
                f"the model ({type(net).__name__}) fails on a zero batch of the data set's shape "
                f"{tuple(shape[1:])}: {first_line(error)}; check its model.* settings"
                + (f" (they are {settings})" if settings else "")
            ) from error
        raise ConfigurationError(
            f"the model ({type(net).__name__}) does not accept the data set's inputs of shape {tuple(shape[1:])} "
            f"(channels, height, width): {first_line(error)}. Choose a model for this "
            f"input size and number of channels{fixed_size if type(net).__module__.startswith('timm') else ''}."
        ) from error
    finally:
        net.train(was_training)
    if num_classes is not None and tuple(out.shape) != (2, num_classes):
        raise ConfigurationError(
            f"the model ({type(net).__name__}) outputs shape {tuple(out.shape[1:])} per sample but the data set has "
            f"{num_classes} classes"
        )


def check_model_before_data(cfg: DictConfig) -> None:
    """Build the network on the meta device (shapes without memory or initialisation) for the input shape that the
    data set config declares (``declared_image_shape``: its ``channels`` and ``image_size``, or the data module's
    fixed shape; its ``num_classes``, or 2 where the files will tell), and pass a zero batch through it: an unknown
    architecture, a setting the model does not take, a missing weights file or inputs the model cannot accept fail
    before a download. Skipped where no shape is declared, and where the model uses an operation the meta device
    cannot run (the check after the data covers it)."""
    import torch

    from labelsmooth.callbacks.precise_bn import refuse_without_batch_norm
    from labelsmooth.cli.errors import raised_in_a_library, root_cause
    from labelsmooth.specification import network_for

    dataset, model = cfg.get("dataset"), cfg.get("model")
    shape = declared_image_shape(dataset) if dataset else None
    if not model or shape is None:
        return
    declared = dataset.get("num_classes")
    num_classes = declared if isinstance(declared, int) and not isinstance(declared, bool) else None
    try:
        with torch.device("meta"):
            net = network_for(model, num_classes or 2, shape[0], shape[1:])
            check_model_accepts(net, shape, num_classes, model_settings(model))
    except Exception as error:
        cause = root_cause(error)
        if _meta_cannot_run(cause) or _meta_cannot_run(cause.__cause__):
            return
        name = model.get("name") or str(model.get("_target_", "")).rsplit(".", 1)[-1]
        if isinstance(cause, TypeError) and (taken := re.search(r"unexpected keyword argument '(\w+)'", str(cause))):
            raise ConfigurationError(
                f"model.{taken[1]}={OmegaConf.select(model, taken[1])}: the model {name} does not take "
                f"{taken[1]!r} ({type(cause).__name__}: {cause})"
            ) from error
        if isinstance(cause, (TypeError, ValueError, KeyError)) and raised_in_a_library(cause):
            message = f"the model {name} refuses its settings ({describe(cause)}); they are {model_settings(model)}"
            raise ConfigurationError(message) from error
        raise
    refuse_without_batch_norm(cfg.get("precise_bn", 0), net)
    refuse_weights_larger_than_memory(net, model)


def refuse_weights_larger_than_memory(net: Any, model: DictConfig) -> None:
    """A network whose float32 weights alone exceed the machine's physical memory, where it is built first (a GPU
    run too) and where torch would fail to allocate them after the data; training needs several times as much."""
    count = sum(parameter.numel() for parameter in net.parameters())
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): torch's own error then
        return
    if 4 * count > memory:
        raise ConfigurationError(
            f"the model ({type(net).__name__}) has {count:,} parameters, {4 * count / 2**30:,.1f} GiB as float32: "
            f"more than this machine's {memory / 2**30:,.1f} GiB of memory; check its model.* settings (they are "
            f"{model_settings(model)})"
        )


def model_settings(model: DictConfig) -> str:
    """The model config's settings as a user gives them: ``model.name='resnet18', model.drop_rate=2``."""
    settings = OmegaConf.to_container(model, resolve=True).items()  # type: ignore[union-attr]
    return ", ".join(f"model.{key}={value!r}" for key, value in settings if not str(key).startswith("_"))


def declared_image_shape(dataset: DictConfig) -> tuple[int, int, int] | None:
    """The image shape a data set config declares before any data is read (``declared_image_shape`` of the data
    module class it names; its ``channels`` and ``image_size`` for a class of yours)."""
    from labelsmooth.data.base import ClassificationDataModule

    try:
        data_class = hydra.utils.get_class(str(dataset.get("_target_")))
    except Exception:  # a target that cannot be imported fails with its own message when the data set is built
        data_class = ClassificationDataModule
    if not (isinstance(data_class, type) and issubclass(data_class, ClassificationDataModule)):
        data_class = ClassificationDataModule
    return data_class.declared_image_shape(dataset)


def _meta_cannot_run(error: BaseException | None) -> bool:
    """Whether ``error`` is the meta device's own limit (an operation without a meta kernel, a value read from a
    tensor), not the model's."""
    return isinstance(error, (NotImplementedError, RuntimeError, TypeError)) and "meta" in str(error).lower()
