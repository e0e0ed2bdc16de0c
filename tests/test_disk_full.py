"""A full disk: every write is atomic, the run ends in one line, nothing partial is left, and resuming gives the
uninterrupted result. The fault is injected where every atomic write passes (``labelsmooth.runs.files.fsync_file``,
after the data went to the temporary file), as ENOSPC: the first, a middle and the last write of a run."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

import labelsmooth.runs.files as files
from labelsmooth.errors import DiskFullError
from labelsmooth.runs.checkpoints import AtomicCheckpointIO
from labelsmooth.runs.files import write_atomic, write_text_atomic
from tests.conftest import run_app_in_process, run_training

OVERRIDES = ["model=mlp", "trainer.max_epochs=3", "callbacks.penultimate_projection=null", "figures=true"]


class FullDisk:
    """``fsync_file`` that counts the atomic writes and fails the ``fail_at``-th (1-based) with ENOSPC."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.count, self.real = fail_at, 0, files.fsync_file

    def __call__(self, path: str | os.PathLike) -> None:
        self.count += 1
        if self.count == self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(path)


def leftovers(run_dir: Path) -> list[str]:
    """Temporary files of atomic writes left in ``run_dir``."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name.endswith(".tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old\n")
    monkeypatch.setattr(files, "fsync_file", FullDisk(fail_at=1))
    with pytest.raises(DiskFullError) as full:
        write_text_atomic(target, "new\n")
    message = str(full.value)
    assert "\n" not in message and str(target) in message and "free there" in message and "resume=true" in message
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_write_that_raises_midway_removes_its_temporary_file(tmp_path: Path) -> None:
    def half_then_full(tmp: str) -> None:
        Path(tmp).write_bytes(b"x" * 100)
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(DiskFullError, match="Disk quota exceeded writing .*out.bin"):
        write_atomic(tmp_path / "out.bin", half_then_full)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_are_written_atomically_next_to_their_final_name(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, tmp_path / "a.ckpt")
    assert torch.equal(io.load_checkpoint(tmp_path / "a.ckpt")["state_dict"]["w"], torch.ones(3))
    monkeypatch.setattr(files, "fsync_file", FullDisk(fail_at=1))
    with pytest.raises(DiskFullError, match=r"b\.ckpt"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, tmp_path / "b.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, int]:
    """The run without a fault, and how many atomic writes it made."""
    counter = FullDisk()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "fsync_file", counter)
        summary = run_training(tmp_path_factory.mktemp("uninterrupted"), OVERRIDES)
    assert summary["status"] == "completed" and counter.count >= 4
    return summary, counter.count


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_a_full_disk_ends_the_run_in_one_line_and_resuming_gives_the_uninterrupted_result(
    which: str, uninterrupted: tuple[dict, int], tmp_path: Path, monkeypatch
) -> None:
    reference, writes = uninterrupted
    fail_at = {"first": 1, "middle": writes // 2, "last": writes}[which]
    monkeypatch.setattr(files, "fsync_file", FullDisk(fail_at))
    with pytest.raises(DiskFullError) as full:
        run_training(tmp_path, OVERRIDES)
    assert "\n" not in str(full.value) and "No space left on device writing" in str(full.value)
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    for checkpoint in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert "state_dict" in torch.load(checkpoint, map_location="cpu", weights_only=True), checkpoint
    recorded = json.loads((tmp_path / "metrics.json").read_text()) if (tmp_path / "metrics.json").is_file() else {}
    if which != "last":  # the failed run's record says why (the last write is metrics.json itself)
        assert recorded["status"] == "failed" and recorded["error_type"] == "DiskFullError"
    has_checkpoint = (tmp_path / "checkpoints" / "last.ckpt").exists()
    resumed = run_training(tmp_path, [*OVERRIDES, *([f"resume={tmp_path}"] if has_checkpoint else [])])
    assert resumed["status"] == "completed"
    for key in ("test/acc", "test/nll", "val/acc_best"):
        assert resumed[key] == reference[key], key


def test_a_full_disk_when_a_completed_run_is_asked_to_resume_ends_in_one_line(tmp_path: Path, monkeypatch) -> None:
    """``resume=true`` of a completed run puts back the ``.hydra/`` files that Hydra rewrote for this command; on a
    full disk that write fails in one line (no traceback), and the run's result stays as it was."""
    run = ["model=mlp", "trainer.max_epochs=1", "logger=none", "figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    assert run_app_in_process(run, tmp_path).returncode == 0
    completed = (tmp_path / "run" / "metrics.json").read_text()
    monkeypatch.setattr(files, "fsync_file", FullDisk(fail_at=1))
    result = run_app_in_process([*run, "resume=true"], tmp_path, env={"HYDRA_FULL_ERROR": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "No space left on device writing" in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "run" / "metrics.json").read_text() == completed


@pytest.mark.parametrize(
    "plugins, atomic",
    [
        ("+trainer.plugins=[{_target_:lightning_fabric.plugins.environments.LightningEnvironment}]", True),
        ("+trainer.plugins={_target_:lightning_fabric.plugins.environments.LightningEnvironment}", True),
        ("+trainer.plugins=[{_target_:lightning_fabric.plugins.io.TorchCheckpointIO}]", False),
    ],
    ids=["a list without a checkpoint writer", "one plugin", "a checkpoint writer of its own"],
)
def test_plugins_of_the_config_keep_atomic_checkpoints_unless_one_writes_them(
    plugins: str, atomic: bool, tmp_path: Path
) -> None:
    """A ``trainer.plugins`` of the config (a cluster environment, say) dropped the atomic writer, so a full disk
    could leave a checkpoint cut short; only a ``CheckpointIO`` of the config's own replaces it."""
    from labelsmooth.cli.build import build_trainer
    from tests.conftest import FAST, compose_train_config

    trainer = build_trainer(compose_train_config([*FAST, plugins], output_dir=tmp_path), logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO) is atomic
