"""The penultimate-layer picture: the projection onto the templates' plane, the models' penultimate features, and
the callback in a real training run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from labelsmooth.analysis.projection import project_onto_template_plane, projection_figure, template_plane
from labelsmooth.callbacks.penultimate import (
    PenultimateProjection,
    check_projection_classes,
    penultimate_features,
    sample_of_classes,
    why_no_penultimate_features,
)
from labelsmooth.data import DigitsDataModule
from labelsmooth.data.in_memory import InMemoryImages
from labelsmooth.errors import ConfigurationError, FigureSkippedWarning
from labelsmooth.models import MLP, ResNetV1, ResNetV2, timm_model
from tests.conftest import run_training
from tests.wandb_records import offline_run_of


def random_templates(dimension: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, dimension))


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def test_features_equal_to_the_templates_land_on_the_vertices() -> None:
    templates = random_templates()
    coordinates, vertices = project_onto_template_plane(templates, templates)
    np.testing.assert_allclose(coordinates, vertices, atol=1e-12)
    # The plane contains the templates, so the triangle keeps its side lengths.
    np.testing.assert_allclose(pairwise_distances(vertices), pairwise_distances(templates), rtol=1e-12)
    np.testing.assert_allclose(vertices.mean(axis=0), 0.0, atol=1e-12)  # coordinates relative to the centroid


def test_the_triangle_is_drawn_the_same_way_round() -> None:
    _, vertices = project_onto_template_plane(np.zeros((0, 16)), random_templates(seed=3))
    side = vertices[1] - vertices[0]
    assert side[0] > 0 and abs(side[1]) < 1e-12  # t1 -> t2 along +x
    assert vertices[2][1] > vertices[0][1]  # t3 above


def test_features_off_the_plane_project_orthogonally() -> None:
    rng = np.random.default_rng(1)
    templates = random_templates(seed=1)
    features = rng.normal(size=(50, 16)) * 3.0
    coordinates, vertices = project_onto_template_plane(features, templates)
    # Independently: the closest point of the affine plane t1 + span(t2 - t1, t3 - t1), by least squares.
    directions = np.stack([templates[1] - templates[0], templates[2] - templates[0]], axis=1)
    weights, *_ = np.linalg.lstsq(directions, (features - templates[0]).T, rcond=None)
    closest = templates[0] + (directions @ weights).T
    for k in range(3):  # a projection onto the plane keeps the distances to the templates within it
        np.testing.assert_allclose(
            np.linalg.norm(coordinates - vertices[k], axis=1), np.linalg.norm(closest - templates[k], axis=1)
        )
    # Moving a point orthogonally to the plane does not move its projection.
    origin, basis = template_plane(templates)
    normal = rng.normal(size=16)
    normal -= basis.T @ (basis @ normal)
    moved, _ = project_onto_template_plane(features + 7.0 * normal, templates)
    np.testing.assert_allclose(moved, coordinates, atol=1e-10)


def test_templates_that_span_no_plane_are_refused() -> None:
    t = np.random.default_rng(2).normal(size=16)
    with pytest.raises(ValueError, match="collinear"):
        template_plane(np.stack([t, 2 * t, -t]))
    with pytest.raises(ValueError, match="coincide"):
        template_plane(np.stack([t, t, -t]))
    with pytest.raises(ValueError, match=r"shape \(3, D\)"):
        template_plane(np.zeros((4, 16)))


def test_the_figure_has_a_panel_per_split() -> None:
    templates = random_templates()
    coordinates, vertices = project_onto_template_plane(templates, templates)
    figure = projection_figure(
        {"training": (coordinates, np.arange(3)), "validation": (coordinates[:2], np.arange(2))},
        vertices,
        ["class 0", "class 1", "class 2"],
    )
    assert [ax.get_title() for ax in figure.axes] == ["training (3 images)", "validation (2 images)"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ResNetV1(num_classes=5, in_channels=1, depth=8),
        lambda: ResNetV2(num_classes=5, in_channels=1, depth=11),
        lambda: MLP(num_classes=5, in_channels=1, image_size=8, hidden_sizes=[12, 7]),
        lambda: MLP(num_classes=5, in_channels=1, image_size=8, hidden_sizes=[]),
        lambda: timm_model("resnet18", num_classes=5, in_channels=1),
    ],
    ids=["resnet_v1", "resnet_v2", "mlp", "mlp_without_hidden_layers", "timm_resnet18"],
)
def test_every_model_offers_its_penultimate_features(build) -> None:
    torch.manual_seed(0)
    net = build().eval()
    assert why_no_penultimate_features(net) is None
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        features = penultimate_features(net, x)
        head = net.get_classifier()
        assert features.shape == (4, head.in_features)
        torch.testing.assert_close(head(features), net(x))
        torch.testing.assert_close(net.forward_head(net.forward_features(x)), net(x))


def test_a_model_without_penultimate_features_is_named() -> None:
    reason = why_no_penultimate_features(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    assert "Sequential has no forward_features, forward_head, get_classifier" in reason


def test_the_sample_is_fixed_and_holds_only_the_chosen_classes() -> None:
    targets = torch.arange(100) % 10
    chosen = sample_of_classes(targets, (3, 5, 7), per_class=4)
    assert torch.equal(chosen, sample_of_classes(targets, (3, 5, 7), per_class=4))
    assert torch.bincount(targets[chosen], minlength=10).tolist() == [0, 0, 0, 4, 0, 4, 0, 4, 0, 0]
    assert len(sample_of_classes(targets, (3, 5, 7), per_class=50)) == 30  # every image of a small class


@pytest.mark.parametrize("classes", [[0, 1], [0, 0, 1], [-1, 0, 1], [0.5, 1, 2]])
def test_projection_classes_must_be_three_distinct_indices(classes) -> None:
    with pytest.raises(ConfigurationError, match=r"analysis.projection_classes=.*three distinct class indices"):
        check_projection_classes(classes)
    assert check_projection_classes(None) == (0, 1, 2)


def test_the_templates_are_weights_and_biases_as_muller_et_al_define_them() -> None:
    """Their ``w_k`` are "weights and biases of the last layer" scoring ``[x; 1]``: a template's product with
    ``[x; 1]`` is the class's logit (the weights alone left the biases' shift out of the picture)."""
    net = MLP(num_classes=5, in_channels=1, image_size=8, hidden_sizes=[6])
    with torch.no_grad():
        net.get_classifier().bias.normal_()
    callback = PenultimateProjection(classes=(4, 0, 2))
    features = torch.randn(7, 6, dtype=torch.float64)
    head = net.get_classifier()
    logits = features @ head.weight.detach().double().T + head.bias.detach().double()
    with_one = torch.cat([features, torch.ones(7, 1, dtype=torch.float64)], dim=1).numpy()
    assert np.allclose(with_one @ callback.templates(net).T, logits[:, [4, 0, 2]].numpy(), atol=1e-12)


def test_a_run_draws_the_picture_of_its_best_checkpoint(tmp_path: Path) -> None:
    overrides = ["model=mlp", "analysis.projection_classes=[3,5,7]", "logger=wandb", "figures=true"]
    summary = run_training(tmp_path, overrides)
    assert (tmp_path / "penultimate_projection.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["analysis.projection_classes"] == [3, 5, 7] == summary["analysis.projection_classes"]
    assert any(path.startswith("media/images/penultimate_projection") for path in offline_run_of(tmp_path).files)


def test_a_class_outside_the_data_set_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"analysis.projection_classes=\[0, 1, 10\].*outside 0..9"):
        run_training(tmp_path, ["model=mlp", "analysis.projection_classes=[0,1,10]"])
    assert not (tmp_path / "penultimate_projection.png").exists()


def test_runs_without_a_picture_say_why(caplog) -> None:
    callback = PenultimateProjection()
    datamodule = SimpleNamespace(train_set=[0], val_set=[0], eval_batch_size=8)
    trainer = SimpleNamespace(is_global_zero=True, datamodule=datamodule)
    net = MLP(num_classes=4, in_channels=1, image_size=8, hidden_sizes=[6])
    with torch.no_grad():
        head = net.get_classifier()
        head.weight[2], head.bias[2] = 2 * head.weight[1] - head.weight[0], 2 * head.bias[1] - head.bias[0]
    cases = {
        "the data set has 2 classes; the picture needs three": SimpleNamespace(num_classes=2, net=net),
        "Sequential has no forward_features": SimpleNamespace(num_classes=4, net=nn.Sequential(nn.Linear(2, 4))),
        "the three templates are collinear": SimpleNamespace(num_classes=4, net=net),
    }
    for message, module in cases.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="labelsmooth.callbacks.penultimate"):
            callback.on_test_end(trainer, module)
        assert f"No penultimate-layer picture: {message}" in caplog.text
    assert callback.run_record() == {}


class DigitsInTensorDatasets(DigitsDataModule):
    """The digits held in ``TensorDataset(images, labels)`` splits, as the benchmarks' synthetic data module holds
    its images: neither a torchvision data set nor the in-memory fast path."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        for split in ("train_set", "val_set", "test_set"):
            dataset = getattr(self, split)
            if isinstance(dataset, InMemoryImages):
                setattr(self, split, TensorDataset(dataset.images, dataset.targets))


class Opaque(Dataset):
    """A data set whose labels cannot be read without decoding its images (no ``targets``, ``samples``, ...)."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        return self.inner[index]


class DigitsInOpaqueDatasets(DigitsInTensorDatasets):
    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        for split in ("train_set", "val_set", "test_set"):
            if isinstance(getattr(self, split), TensorDataset):
                setattr(self, split, Opaque(getattr(self, split)))


def test_a_run_on_tensor_datasets_draws_the_picture_and_completes(tmp_path: Path) -> None:
    summary = run_training(
        tmp_path, ["model=mlp", f"dataset._target_={__name__}.DigitsInTensorDatasets", "figures=true"]
    )
    assert (tmp_path / "penultimate_projection.png").stat().st_size > 10_000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["analysis.projection_classes"] == [0, 1, 2] == summary["analysis.projection_classes"]


def test_a_picture_that_cannot_be_drawn_is_a_warning_and_the_run_completes(tmp_path: Path) -> None:
    with pytest.warns(FigureSkippedWarning) as warned:
        summary = run_training(
            tmp_path, ["model=mlp", f"dataset._target_={__name__}.DigitsInOpaqueDatasets", "figures=true"]
        )
    (warning,) = [w for w in warned if issubclass(w.category, FigureSkippedWarning)]
    assert str(warning.message) == (
        "No penultimate-layer picture: TypeError: cannot read the labels of Opaque without decoding it"
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert "analysis.projection_classes" not in metrics and "analysis.projection_classes" not in summary
    assert not (tmp_path / "penultimate_projection.png").exists()
