"""Distillation: the loss against an independent formula, and real students of a real (tiny) teacher run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F

from labelsmooth.cli.build import build_datamodule
from labelsmooth.cli.teacher import load_teacher
from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.distillation import DistillationLoss
from tests.conftest import FAST, compose_train_config, run_training, run_training_with_hydra_config

STEPS = ["trainer.max_epochs=2", "trainer.limit_train_batches=4"]


def reference_loss(student, teacher, target, alpha, temperature):
    """(1 - α)·CE + α·τ²·Σ p_t (log p_t - log p_s), written from the probabilities."""
    p_teacher = torch.softmax(teacher.double() / temperature, dim=-1)
    p_student = torch.softmax(student.double() / temperature, dim=-1)
    kl = (p_teacher * (p_teacher.log() - p_student.log())).sum(dim=-1).mean()
    return (1 - alpha) * F.cross_entropy(student.double(), target) + alpha * temperature**2 * kl


@pytest.mark.parametrize("alpha,temperature", [(0.0, 1.0), (0.3, 2.0), (0.9, 5.0), (1.0, 0.5)])
def test_the_loss_is_the_formula(alpha: float, temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(32, 7, generator=generator) * 3, torch.randn(32, 7, generator=generator) * 3
    target = torch.randint(0, 7, (32,), generator=generator)
    loss = DistillationLoss(alpha, temperature)(F.cross_entropy(student, target), student, teacher)
    torch.testing.assert_close(loss.double(), reference_loss(student, teacher, target, alpha, temperature))


def test_the_teacher_gets_no_gradient_and_agreeing_logits_cost_nothing() -> None:
    student = torch.randn(8, 5, requires_grad=True)
    teacher = student.detach().clone().requires_grad_(True)
    loss = DistillationLoss(alpha=1.0, temperature=3.0)(torch.tensor(0.0), student, teacher)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert teacher.grad is None
    torch.testing.assert_close(student.grad, torch.zeros_like(student), atol=1e-7, rtol=0)


def test_the_loss_is_float32_under_bf16_autocast() -> None:
    student, teacher = torch.randn(8, 5).bfloat16(), torch.randn(8, 5).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DistillationLoss(0.5, 2.0)(torch.tensor(1.0), student, teacher)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,match",
    [({"alpha": 1.5}, "distill.alpha=1.5"), ({"alpha": -0.1}, "distill.alpha"), ({"temperature": 0}, "distill.temp")],
)
def test_out_of_range_parameters_are_refused(kwargs, match) -> None:
    with pytest.raises(ConfigurationError, match=match):
        DistillationLoss(**kwargs)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> str:
    run_dir = tmp_path_factory.mktemp("teacher")
    teacher = ["model=mlp", "smoothing=uniform", "smoothing.epsilon=0.2", *STEPS]
    return run_training_with_hydra_config(run_dir, teacher)["checkpoint"]


def student(teacher_ckpt: str, *overrides: str) -> list[str]:
    return ["experiment=distill", "smoothing=none", f"teacher_ckpt={teacher_ckpt}", *STEPS, *overrides]


def best_weights(summary: dict) -> dict[str, torch.Tensor]:
    return torch.load(summary["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]


def test_alpha_zero_trains_exactly_like_cross_entropy(tmp_path: Path, teacher_ckpt: str) -> None:
    plain = run_training(tmp_path / "plain", ["smoothing=none", *STEPS])
    distilled = run_training(tmp_path / "distilled", student(teacher_ckpt, "distill.alpha=0"))
    metrics = [key for key in plain if key.startswith(("val/", "test/", "train/"))]
    assert metrics and {key: distilled[key] for key in metrics} == {key: plain[key] for key in metrics}
    plain_weights, distilled_weights = best_weights(plain), best_weights(distilled)
    assert plain_weights.keys() == distilled_weights.keys()  # no teacher weights in the student's checkpoint
    for key, value in plain_weights.items():
        assert torch.equal(value, distilled_weights[key]), key
    # ... and the teacher term does change training when it has weight.
    taught = run_training(tmp_path / "taught", student(teacher_ckpt, "distill.alpha=0.5"))
    assert any(not torch.equal(v, best_weights(taught)[k]) for k, v in plain_weights.items() if v.is_floating_point())


def test_the_student_records_its_teacher_and_keeps_it_out_of_checkpoints(tmp_path: Path, teacher_ckpt: str) -> None:
    summary = run_training(tmp_path, student(teacher_ckpt, "model=resnet_v1", "distill.temperature=2.5"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["smoothing"] == "none"
    assert metrics["distill.alpha"] == 0.5 and metrics["distill.temperature"] == 2.5
    assert metrics["teacher.checkpoint"] == str(Path(teacher_ckpt).resolve())
    assert metrics["teacher.smoothing"] == "uniform" and metrics["teacher.smoothing.epsilon"] == 0.2
    assert metrics["teacher.model"] == "mlp" and metrics["teacher.status"] == "completed"
    checkpoint = torch.load(summary["checkpoint"], map_location="cpu", weights_only=True)
    assert not any("teacher" in key for key in checkpoint["state_dict"])
    optimized = sum(len(group["params"]) for group in checkpoint["optimizer_states"][0]["param_groups"])
    net = hydra.utils.instantiate(compose_train_config(["model=resnet_v1"]).model, num_classes=10, in_channels=1)
    assert optimized == len(list(net.parameters()))


def test_the_teacher_is_frozen_in_eval_mode(teacher_ckpt: str) -> None:
    cfg = compose_train_config([*FAST, "model=mlp"])
    teacher, record = load_teacher(teacher_ckpt, build_datamodule(cfg.dataset))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert record["teacher.smoothing"] == "uniform"


def test_distill_without_a_teacher_fails_before_any_data_is_read(tmp_path: Path) -> None:
    missing_data = ["dataset=image_folder", f"dataset.train_dir={tmp_path / 'no-such-data'}"]
    with pytest.raises(ConfigurationError, match=r"teacher_ckpt=outputs/runs/<date>/<time>/checkpoints/best-epoch"):
        run_training(tmp_path, ["experiment=distill", *missing_data])
    with pytest.raises(ConfigurationError, match=r"teacher_ckpt=.*no such checkpoint file"):
        run_training(tmp_path, ["experiment=distill", f"teacher_ckpt={tmp_path / 'nope.ckpt'}", *missing_data])
    with pytest.raises(ConfigurationError, match=r"teacher_ckpt=.*add experiment=distill"):
        run_training(tmp_path, [f"teacher_ckpt={tmp_path / 'nope.ckpt'}", *missing_data])
    with pytest.raises(Exception, match=r"distill.alpha=2 must be a number in \[0, 1\]"):  # in Hydra's wrapper
        run_training(tmp_path, ["experiment=distill", "distill.alpha=2", f"teacher_ckpt={tmp_path}", *missing_data])


def test_a_teacher_checkpoint_copied_away_from_its_run_teaches(tmp_path: Path, teacher_ckpt: str) -> None:
    """The checkpoint carries its run specification: the teacher needs no run directory."""
    moved = shutil.copy(teacher_ckpt, tmp_path / "teacher.ckpt")
    summary = run_training(tmp_path / "student", student(str(moved)))
    assert summary["status"] == "completed" and summary["teacher.smoothing"] == "uniform"
    assert summary["teacher.smoothing.epsilon"] == 0.2


def test_an_old_teacher_checkpoint_away_from_its_run_is_refused(tmp_path: Path, teacher_ckpt: str) -> None:
    """A checkpoint written before checkpoints carried their specification still needs its run directory."""
    from labelsmooth.specification import SPECIFICATION_KEY

    (tmp_path / "checkpoints").mkdir()
    checkpoint = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
    del checkpoint[SPECIFICATION_KEY]
    torch.save(checkpoint, tmp_path / "checkpoints" / "teacher.ckpt")
    with pytest.raises(ConfigurationError, match=r"teacher_ckpt=.*no run config at"):
        run_training(tmp_path / "student", student(str(tmp_path / "checkpoints" / "teacher.ckpt")))


def test_a_student_on_another_split_than_its_teachers_is_refused(tmp_path: Path, teacher_ckpt: str) -> None:
    with pytest.raises(ConfigurationError, match=r"other data.*dataset.split_seed: teacher 0, student 1"):
        run_training(tmp_path / "other_split", student(teacher_ckpt, "dataset.split_seed=1"))
    assert (
        run_training(tmp_path / "other_batch_size", student(teacher_ckpt, "dataset.batch_size=32"))["status"]
        == "completed"
    )
    # the same data written as an interpolation (sweep=seed_000's input_range): compared resolved, accepted
    from omegaconf import OmegaConf

    from labelsmooth.cli.teacher import check_same_data

    teacher = OmegaConf.create({"input_range": [0.01, 1.0]})
    config = OmegaConf.create({"arm": [0.01, 1.0], "dataset": {"input_range": "${arm}"}})
    check_same_data(teacher, config.dataset, teacher_ckpt)
    with pytest.raises(ConfigurationError, match=r"dataset.input_range: teacher \[0.01, 1.0\], student \[0.0, 1.0\]"):
        check_same_data(teacher, OmegaConf.create({"input_range": [0.0, 1.0]}), teacher_ckpt)
