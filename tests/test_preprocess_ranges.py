"""``dataset.input_range`` only means something with ``dataset.normalize=none``: normalisation would cancel it."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from labelsmooth.cli.build import CONFIG_DIR
from labelsmooth.data.preprocess import NORMALIZATIONS, BatchPreprocessor
from labelsmooth.smoothing import sigmoid
from tests.conftest import REPO_ROOT, compose_train_config

SEEDS_ADVICE = "dataset.input_range=[0.01,1] dataset.normalize=none"


def standardized(images: torch.Tensor, input_range: tuple[float, float]) -> torch.Tensor:
    """What ``normalize=standardize`` computed for a range before it was refused: scale, then standardise."""
    low, high = input_range
    x = low + (high - low) * images.double() / 255
    return (x - x.mean()) / x.std(unbiased=False)


def test_standardization_cancels_any_input_range() -> None:
    """Why the pair is refused: the standardised batch is the same for [0, 1] and [0.01, 1] (and any range)."""
    images = torch.randint(0, 256, (16, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    torch.testing.assert_close(standardized(images, (0.0, 1.0)), standardized(images, (0.01, 1.0)))
    torch.testing.assert_close(standardized(images, (0.0, 1.0)), standardized(images, (-3.0, 7.0)))


@pytest.mark.parametrize("normalize", ["standardize", "pixel_mean"])
@pytest.mark.parametrize("input_range", [(0.01, 1.0), (0.0, 2.0), (-1.0, 1.0)])
def test_input_range_with_normalization_is_refused(normalize: str, input_range: tuple[float, float]) -> None:
    with pytest.raises(ValueError) as error:
        BatchPreprocessor(input_range=input_range, normalize=normalize)
    message = str(error.value)
    assert f"dataset.input_range={list(input_range)}" in message
    assert f"dataset.normalize={normalize}" in message
    assert "dataset.normalize=none" in message


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_the_unit_range_works_with_every_normalization(normalize: str) -> None:
    preprocessor = BatchPreprocessor(input_range=[0, 1], normalize=normalize)
    assert preprocessor.input_range == (0.0, 1.0)


def test_seeds_range_without_normalization_scales_the_inputs() -> None:
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    scaled = BatchPreprocessor(input_range=[0.01, 1.0], normalize="none")(images, train=False)
    assert scaled.flatten().tolist() == pytest.approx([0.01, 1.0])


def test_the_default_data_set_refuses_the_range_alone_and_takes_it_with_normalize_none(tmp_path: Path) -> None:
    """digits standardises by default, so ``dataset.input_range=[0.01,1]`` alone stops the run at instantiation."""
    cfg = compose_train_config(["dataset.input_range=[0.01,1]"], output_dir=tmp_path)
    assert cfg.dataset.normalize == "standardize"
    with pytest.raises(Exception, match=r"dataset\.normalize=standardize.*dataset\.normalize=none"):
        hydra.utils.instantiate(cfg.dataset)
    cfg = compose_train_config(SEEDS_ADVICE.split(), output_dir=tmp_path)
    assert hydra.utils.instantiate(cfg.dataset).preprocessor.input_range == (0.01, 1.0)


def test_the_target_range_advice_names_both_settings() -> None:
    strategies = (REPO_ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    assert SEEDS_ADVICE in strategies
    assert SEEDS_ADVICE in (CONFIG_DIR / "smoothing" / "target_range.yaml").read_text(encoding="utf-8")
    assert "dataset.normalize=none" in sigmoid.TargetRange.__doc__
