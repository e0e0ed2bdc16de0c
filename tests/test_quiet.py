"""The library messages every run would print (and that ask nothing of the user) are silenced; others are not."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest

from labelsmooth.tracking.quiet import silence_library_noise
from labelsmooth.tracking.wandb_run import remove_anonymous_setting, sweep_group_name


def test_lightning_tips_are_dropped_and_other_lightning_messages_kept(caplog) -> None:
    silence_library_noise()
    silence_library_noise()  # idempotent: one filter
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(lightning.filters) == 1
    with caplog.at_level(logging.INFO):
        lightning.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        lightning.info("GPU available: False, used: False")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["GPU available: False, used: False"]


def test_the_leafspec_deprecation_is_silenced_and_other_future_warnings_are_not() -> None:
    from torch.utils._pytree import LeafSpec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise()
        LeafSpec()
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


@pytest.mark.parametrize("in_a_slurm_job", [False, True])
def test_the_srun_warning_is_silenced_outside_a_slurm_job_only(
    in_a_slurm_job: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's own check, with an ``srun`` on the PATH: noise on a login node, a real warning inside a job."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    if in_a_slurm_job:
        monkeypatch.setenv("SLURM_JOB_ID", "7")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise()
        SLURMEnvironment._validate_srun_used()
    shown = [str(w.message) for w in caught if "srun" in str(w.message)]
    assert len(shown) == (1 if in_a_slurm_job else 0), shown


def test_wandb_logger_no_longer_passes_the_anonymous_setting(tmp_path: Path) -> None:
    from pytorch_lightning.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="labelsmooth")
    assert "anonymous" in logger._wandb_init  # what Lightning hands to wandb.init, and W&B warns about
    remove_anonymous_setting(logger)
    assert "anonymous" not in logger._wandb_init
    assert logger._wandb_init["project"] == "labelsmooth"


def test_sweep_group_name_is_the_sweep_directorys_date_and_time() -> None:
    assert sweep_group_name("outputs/multirun/2026-11-23/01-02-03") == "sweep-2026-11-23-01-02-03"
    assert sweep_group_name(Path("/abs/outputs/multirun/2026-11-23/01-02-03")) == "sweep-2026-11-23-01-02-03"


def test_a_wandb_run_looks_for_launch_inputs_only_where_they_can_be_staged(monkeypatch, tmp_path: Path) -> None:
    """W&B's Launch inputs can only be staged through their module: a run of a process that never imported it
    does not import it (0.4 s) to look; where it is imported, the staged inputs are applied as before."""
    from wandb.sdk.launch.inputs import internal
    from wandb.sdk.wandb_run import Run

    from labelsmooth.tracking.wandb_logger import LAUNCH_INPUTS, WandbLogger

    WandbLogger(offline=True, save_dir=str(tmp_path), project="labelsmooth")
    applied = []
    monkeypatch.setattr(internal.StagedLaunchInputs, "apply", lambda self, run: applied.append(run))
    run = object.__new__(Run)
    monkeypatch.delitem(sys.modules, LAUNCH_INPUTS)
    Run._detect_and_apply_job_inputs(run)
    assert LAUNCH_INPUTS not in sys.modules and applied == []
    monkeypatch.setitem(sys.modules, LAUNCH_INPUTS, internal)
    Run._detect_and_apply_job_inputs(run)
    assert applied == [run]
