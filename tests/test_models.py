"""Networks: Keras parameter counts and the input sizes of the data sets."""

from __future__ import annotations

import pytest
import torch

from labelsmooth.models import MLP, ResNetV1
from labelsmooth.models.l2_penalty import apply_l2_penalties, l2_penalty
from labelsmooth.models.resnet import ResNetV2


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_keras_example() -> None:
    # Keras' model.summary() of ResNet20v1: 274,442 parameters, of which 1,376 BN moving statistics (buffers here).
    model = ResNetV1(10, 3, 32, depth=20)
    assert count(model) == 273_066 and sum(b.numel() for n, b in model.named_buffers() if "running" in n) == 1_376
    assert 0.26e6 < count(ResNetV1(10, 3, 32, depth=20)) < 0.28e6
    assert 2.4e6 < count(ResNetV2(10, 3, 32, depth=83)) < 2.6e6


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (32, 3), (72, 3)])
@pytest.mark.parametrize("cls,depth", [(ResNetV1, 8), (ResNetV2, 11)])
def test_resnets_accept_every_input_size(cls, depth: int, size: int, channels: int) -> None:
    model = cls(7, channels, size, depth=depth).eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("depth", [7, 21])
def test_invalid_depth_names_the_valid_ones(depth: int) -> None:
    with pytest.raises(ValueError, match=r"6n\+2 \(8, 14, 20"):
        ResNetV1(10, depth=depth)


def test_l2_applies_to_convolution_kernels_only() -> None:
    model = ResNetV1(10, 3, 32, depth=8, l2=1e-4)
    decayed, plain = model.optimizer_param_groups()
    assert decayed["l2"] == pytest.approx(1e-4) and "l2" not in plain
    assert all(p.dim() == 4 for p in decayed["params"])
    assert sum(p.numel() for g in (decayed, plain) for p in g["params"]) == count(model)


def keras_l2_gradient_step(optimizer_factory, weight_decay: float, l2: float = 1e-4):
    """One optimizer step on a loss, returning (weights after the step, the same with Keras' L2 in the loss and
    ``weight_decay`` applied by a plain optimizer over every parameter)."""
    torch.manual_seed(0)
    model = ResNetV1(10, 3, 8, depth=8, l2=l2)
    reference = ResNetV1(10, 3, 8, depth=8, l2=l2)
    reference.load_state_dict(model.state_dict())
    inputs = torch.randn(4, 3, 8, 8)
    optimizer = optimizer_factory(model.optimizer_param_groups(), weight_decay=weight_decay)
    in_loss = apply_l2_penalties(optimizer)
    loss = model(inputs).square().mean()
    if in_loss:
        loss = loss + l2_penalty(in_loss)
    loss.backward()
    optimizer.step()
    kernels = [m.weight for m in reference.modules() if isinstance(m, torch.nn.Conv2d)]
    ref_optimizer = optimizer_factory(reference.parameters(), weight_decay=weight_decay)
    ref_loss = reference(inputs).square().mean() + l2 * sum(k.pow(2).sum() for k in kernels)
    ref_loss.backward()
    ref_optimizer.step()
    return [p.detach() for p in model.parameters()], [p.detach() for p in reference.parameters()], in_loss


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-3])
def test_keras_l2_means_the_same_under_every_optimizer(name: str, weight_decay: float) -> None:
    """model.l2 is Keras' ``l2·Σw²`` in the loss; optimizer.weight_decay keeps its own meaning on every parameter."""
    factory = getattr(torch.optim, name)
    ours, reference, in_loss = keras_l2_gradient_step(lambda p, **kw: factory(p, lr=0.1, **kw), weight_decay)
    assert bool(in_loss) == (name == "AdamW")  # coupled decay (SGD, Adam) takes it as weight decay 2·l2
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mlp_shapes() -> None:
    mlp = MLP(10, 1, 28, hidden_sizes=[100], activation="sigmoid")
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert count(mlp) == 784 * 100 + 100 + 100 * 10 + 10
    with pytest.raises(ValueError, match="inputs of shape"):
        mlp(torch.rand(3, 1, 8, 8))


def test_paper_presets_have_the_paper_depths(tmp_path) -> None:
    import hydra

    from tests.conftest import compose_train_config

    for preset, expected in (("resnet20_v1", (ResNetV1, 0.27e6)), ("resnet83_v2", (ResNetV2, 2.5e6))):
        cfg = compose_train_config([f"model={preset}"], output_dir=tmp_path)
        net = hydra.utils.instantiate(cfg.model, num_classes=10, in_channels=3, image_size=(32, 32))
        assert isinstance(net, expected[0]) and abs(count(net) - expected[1]) / expected[1] < 0.05


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"hidden_sizes": [-3]}, r"^model.hidden_sizes=\[-3\] must be a list of integers >= 1"),
        ({"hidden_sizes": [8, 0]}, r"^model.hidden_sizes=\[8, 0\] must be"),
        ({"dropout": 1.5}, r"^model.dropout=1.5 must lie in \[0, 1\)$"),
    ],
)
def test_mlp_settings_that_cannot_build_a_network_are_one_configuration_error(setting, message) -> None:
    """They were torch's errors (a negative dimension, a dropout probability) inside Hydra's instantiation error."""
    from labelsmooth.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        MLP(num_classes=3, in_channels=1, image_size=4, **setting)
    assert MLP(num_classes=3, in_channels=1, image_size=4, hidden_sizes=[])(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_seed_mlp_preset_is_784_100_10_sigmoid_without_biases(tmp_path) -> None:
    import hydra

    from tests.conftest import compose_train_config

    cfg = compose_train_config(["model=mlp_seed"], output_dir=tmp_path)
    mlp = hydra.utils.instantiate(cfg.model, num_classes=10, in_channels=1, image_size=(28, 28))
    assert count(mlp) == 784 * 100 + 100 * 10
    assert any(isinstance(m, torch.nn.Sigmoid) for m in mlp.modules())


def test_timm_model_by_name_with_classes_and_channels() -> None:
    from labelsmooth.models import timm_model

    net = timm_model("resnet18", num_classes=7, in_channels=1, image_size=28)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    vit = timm_model("test_vit", num_classes=5, in_channels=3, image_size=32, pass_image_size=True)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_timm_pretrained_loads_a_local_file_and_never_a_hub(tmp_path) -> None:
    import timm

    from labelsmooth.models import timm_model

    source = timm.create_model("test_resnet", pretrained=False, num_classes=1000, in_chans=3)
    weights = tmp_path / "weights.pth"
    torch.save(source.state_dict(), weights)
    net = timm_model("test_resnet", num_classes=4, in_channels=3, pretrained=str(weights))
    first = next(n for n, p in source.named_parameters() if p.dim() == 4)
    torch.testing.assert_close(dict(net.named_parameters())[first], dict(source.named_parameters())[first])
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match="local file"):
        timm_model("test_resnet", num_classes=4, in_channels=3, pretrained=True)
    with pytest.raises(FileNotFoundError):
        timm_model("test_resnet", num_classes=4, in_channels=3, pretrained=str(tmp_path / "absent.pth"))


def test_timm_pretrained_weights_load_whole_or_are_refused_in_one_line(tmp_path) -> None:
    """timm's loading of a local file is lenient when the classes differ from its default: a file of another
    architecture (or this project's checkpoint) loaded nothing, and the run trained from random weights. Now every
    weight fits, a same-size classifier is kept, a checkpoint of this project gives its network's weights, and
    another architecture is one ConfigurationError."""
    import timm

    from labelsmooth.errors import ConfigurationError
    from labelsmooth.models import timm_model

    source = timm.create_model("test_resnet", pretrained=False, num_classes=4, in_chans=3)
    weights, checkpoint, other = tmp_path / "w.pth", tmp_path / "run.ckpt", tmp_path / "other.pth"
    torch.save(source.state_dict(), weights)
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, checkpoint)
    torch.save(timm.create_model("test_efficientnet", num_classes=4).state_dict(), other)
    for path in (weights, checkpoint):
        net = timm_model("test_resnet", num_classes=4, in_channels=3, pretrained=str(path))
        for key, value in source.state_dict().items():
            torch.testing.assert_close(net.state_dict()[key], value)  # the classifier too: the same 4 classes
    one_channel = timm_model("test_resnet", num_classes=4, in_channels=1, pretrained=str(weights))
    assert one_channel(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(ConfigurationError, match=rf"^model.pretrained={other}: its weights do not fit timm's test_res"):
        timm_model("test_resnet", num_classes=4, in_channels=3, pretrained=str(other))
    with pytest.raises(ConfigurationError, match=r"^model.bn_momentum=1.5 must lie in \(0, 1\]"):
        timm_model("test_efficientnet", num_classes=4, in_channels=3, bn_momentum=1.5)


def test_a_name_that_is_not_a_timm_architecture_is_refused_with_the_close_ones() -> None:
    """A typo or a hub name is one configuration error naming the key, the value and close names (it was timm's
    ``RuntimeError('Unknown model ...')`` inside Hydra's instantiation error)."""
    from labelsmooth.models import timm_model

    with pytest.raises(ValueError, match=r"^model.name='resnet81' is not a timm architecture \(close: resnet18"):
        timm_model("resnet81", num_classes=4, in_channels=3)
    with pytest.raises(ValueError, match=r"model.name='hf-hub:timm/resnet18' is not a timm architecture;"):
        timm_model("hf-hub:timm/resnet18", num_classes=4, in_channels=3)
    tagged = timm_model("test_resnet.r160_in1k", num_classes=4, in_channels=3)  # a name with its weights tag
    assert tagged.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_keras_step_schedule_matches_the_example() -> None:
    from labelsmooth.lr_schedules import KerasStepLR

    def keras_lr_schedule(epoch: int) -> float:  # cifar10_resnet.py, verbatim logic
        lr = 1e-3
        if epoch > 180:
            lr *= 0.5e-3
        elif epoch > 160:
            lr *= 1e-3
        elif epoch > 120:
            lr *= 1e-2
        elif epoch > 80:
            lr *= 1e-1
        return lr

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = KerasStepLR(optimizer)
    rates = []
    for _ in range(200):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([keras_lr_schedule(epoch) for epoch in range(200)], rel=1e-9)
    restored = KerasStepLR(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3))
    restored.load_state_dict(scheduler.state_dict())
    assert restored.last_epoch == 200
