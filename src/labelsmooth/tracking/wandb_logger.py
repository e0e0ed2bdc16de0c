"""Lightning's ``WandbLogger`` with one more choice for ``log_model``: ``best``, the run's best checkpoint alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """``log_model``: Lightning's ``False``, ``True`` (the checkpoints kept at the end of fit) or ``"all"`` (every
    checkpoint as it is written), or ``"best"``: the checkpoint the run evaluates (its best), logged once by
    ``log_best_checkpoint`` as a W&B model artifact ``model-<run id>`` with the alias ``best``. A checkpoint carries
    its run specification, so the artifact alone is enough to evaluate or load the model. Offline, W&B stages the
    file with the run, and ``wandb sync`` uploads it."""

    def __init__(self, *args: Any, log_model: bool | Literal["all", "best"] = False, **kwargs: Any) -> None:
        super().__init__(*args, log_model=False if log_model == "best" else log_model, **kwargs)
        self.logs_best_checkpoint = log_model == "best"
        look_for_launch_inputs_only_where_staged()

    def log_best_checkpoint(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """The checkpoint ``path`` as the artifact ``model-<run id>`` (``model.ckpt``, alias ``best``)."""
        import wandb

        artifact = wandb.Artifact(name=f"model-{self.experiment.id}", type="model", metadata=metadata)
        artifact.add_file(str(path), name="model.ckpt")
        self.experiment.log_artifact(artifact, aliases=["best"])


LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


def look_for_launch_inputs_only_where_staged() -> None:
    """Every ``wandb.init`` applies the job inputs staged for W&B Launch (``Run._detect_and_apply_job_inputs``), and to
    look for them imports W&B's Launch agent and public API, ~0.4 s of a process's first run. Inputs are staged only
    through the module that holds them (``LAUNCH_INPUTS``), so where it was never imported there are none: the run
    then skips the look, and W&B applies them as before wherever the module is loaded."""
    from wandb.sdk.wandb_run import Run

    apply = Run._detect_and_apply_job_inputs
    if getattr(apply, "looks_only_where_staged", False):
        return

    def apply_staged_launch_inputs(run: Run) -> None:
        if LAUNCH_INPUTS in sys.modules:
            apply(run)

    apply_staged_launch_inputs.looks_only_where_staged = True  # type: ignore[attr-defined]
    Run._detect_and_apply_job_inputs = apply_staged_launch_inputs  # type: ignore[method-assign,assignment]
