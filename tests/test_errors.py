"""The error policy: a problem the user can fix is one line; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from labelsmooth.cli.errors import RunFailed, as_compact_user_error, is_user_error, run_app
from labelsmooth.cli.process_exit import end_without_final_collection
from labelsmooth.data.image_data import DatasetNotFoundError
from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.checkpoints import CheckpointError
from tests.conftest import compose_train_config, run_app_in_process

SHORT = {"HYDRA_FULL_ERROR": "", "WANDB_MODE": "disabled"}


@pytest.mark.parametrize(
    "error",
    [
        ConfigurationError("smoothing.gamma=2 is out of range"),
        DatasetNotFoundError("data/cifar10 is missing"),
        CheckpointError("ckpt_path=x.ckpt: no such file"),
        FileNotFoundError(2, "No such file or directory", "/proc/x"),
        NotImplementedError("not finished: say so"),
    ],
)
def test_the_users_problems_become_one_line(error: Exception) -> None:
    compact = as_compact_user_error(error)
    assert isinstance(compact, RunFailed)
    assert str(compact).startswith(f"{type(error).__name__}: ")


@pytest.mark.parametrize(
    "error", [ValueError("Expected input batch_size (3) to match target batch_size (2)"), RuntimeError("boom")]
)
def test_a_bug_keeps_its_traceback(error: Exception) -> None:
    """A ``ValueError`` from inside torch is not the user's configuration: it is raised as it is."""
    assert as_compact_user_error(error) is error
    assert not is_user_error(error)


def test_an_app_process_ends_without_the_last_garbage_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_app`` registers ``gc.freeze`` as an exit handler, once: CPython's collection at exit of every object
    that torch and Lightning leave alive took a run's process 1.1 s (``labelsmooth.cli.process_exit``)."""
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    end_without_final_collection.cache_clear()
    try:
        assert run_app(lambda: 7, multirun=False) == 7
        run_app(lambda: None, multirun=True)
    finally:
        end_without_final_collection.cache_clear()
    assert registered == [gc.freeze]


@pytest.mark.parametrize("scheduler", ["scheduler=cosine", "scheduler=none"])
def test_a_bad_optimizer_setting_is_one_line_before_the_data_is_read(tmp_path: Path, scheduler: str) -> None:
    args = ["optimizer.lr=fast", scheduler, "logger=none", "dataset=cifar10"]
    result = run_app_in_process(args, cwd=tmp_path, env=SHORT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "ConfigurationError: optimizer.lr=fast must be a number > 0 (the learning rate)"
    assert "DatasetNotFoundError" not in result.stderr  # refused before the (absent) data set was looked for


def test_optimizer_settings_that_are_not_numbers_are_the_optimizers_own(tmp_path: Path) -> None:
    """Adafactor's ``eps`` is a pair, with None for a default: the shared ranges apply to numbers only."""
    from labelsmooth.cli.schema import validate_run_config
    from tests.conftest import compose_train_config

    adafactor = ["optimizer._target_=torch.optim.Adafactor", "+optimizer.eps=[null,0.001]", "optimizer.lr=0.01"]
    validate_run_config(compose_train_config(adafactor, output_dir=tmp_path))


def test_two_starting_points_or_a_sweeps_resume_in_a_single_run_are_refused(tmp_path: Path) -> None:
    from labelsmooth.cli.checks import check_start
    from tests.conftest import compose_train_config

    both = ["resume=true", "ckpt_path=a.ckpt"]
    with pytest.raises(ConfigurationError, match=r"^resume=True and ckpt_path=a.ckpt both say where training starts"):
        check_start(compose_train_config(both, output_dir=tmp_path), both, multirun=False)
    check_start(compose_train_config(["ckpt_path=a.ckpt"], output_dir=tmp_path), ["ckpt_path=a.ckpt"], multirun=True)
    with pytest.raises(ConfigurationError, match=r"^resume_sweep=true continues a sweep \(python train.py -m "):
        check_start(compose_train_config(["resume_sweep=true"], output_dir=tmp_path), ["resume_sweep=true"], False)
    check_start(compose_train_config(["resume_sweep=true"], output_dir=tmp_path), ["resume_sweep=true"], multirun=True)


def test_a_bad_batch_mixing_setting_is_one_line_before_the_data_is_read(tmp_path: Path) -> None:
    args = ["augment=mixup", "augment.prob=2", "logger=none", "dataset=cifar10", f"paths.data_dir={tmp_path}"]
    result = run_app_in_process(args, cwd=tmp_path, env=SHORT)
    assert result.returncode == 1 and result.stderr.startswith("ConfigurationError: augment.prob=2"), result.stderr
    assert "DatasetNotFoundError" not in result.stderr  # refused before the (absent) data set was looked for


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["optimizer=sgd", "optimizer.momentum=2"], "optimizer.momentum=2 must be a number in [0, 1]"),
        (["scheduler=multistep", "scheduler.gamma=-1"], "scheduler.gamma=-1 must be a number >= 0 (the learning "),
        (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 must be an integer >= 1 (or null)"),
        (["trainer.min_epochs=5", "trainer.max_epochs=1"], "trainer.min_epochs=5 exceeds trainer.max_epochs=1: it"),
    ],
)
def test_optimizer_scheduler_and_validation_settings_out_of_their_range_are_refused(
    args: list[str], line: str, tmp_path: Path
) -> None:
    """torch checks neither momentum's upper bound nor a step factor's sign; Lightning divides by the interval."""
    from labelsmooth.cli.schema import validate_run_config
    from tests.conftest import compose_train_config

    with pytest.raises(ConfigurationError) as refused:
        validate_run_config(compose_train_config(args, output_dir=tmp_path))
    assert str(refused.value).startswith(line)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("hydra.launcher.batching=foo", "ConfigurationError: hydra.launcher.batching='foo' must be one of vmap, loop"),
        ("hydra.launcher.max_members=0", "ConfigurationError: hydra.launcher.max_members=0 must be an integer >= 1"),
    ],
)
def test_a_bad_fused_launcher_setting_is_one_line_before_any_job(tmp_path: Path, setting: str, message: str) -> None:
    args = ["-m", "hydra/launcher=fused", setting, "seed=0,1", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_app_in_process(args, cwd=tmp_path, env=SHORT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert not list((tmp_path / "sweep").glob("*/"))  # no job started


@pytest.mark.parametrize("script", ["train.py", "eval.py"])  # eval.py's was pathlib's traceback from inside Hydra
def test_a_run_directory_that_cannot_be_created_is_one_line(tmp_path: Path, script: str) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    args = [f"hydra.run.dir={blocker}/run", "logger=none", *(["ckpt_path=x.ckpt"] if script == "eval.py" else [])]
    result = run_app_in_process(args, cwd=tmp_path, env=SHORT, script=script)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"hydra.run.dir={blocker}/run: cannot create the directory (Not a directory). Choose a writable place with "
        "hydra.run.dir=... or paths.log_dir=... (LABELSMOOTH_ROOT moves outputs/ too)."
    ]


@pytest.mark.parametrize(
    ("script", "args"),
    [("train.py", []), ("train.py", ["-m", "seed=0,1"]), ("eval.py", ["ckpt_path=x.ckpt"])],
)
def test_changing_into_the_run_directory_is_refused_before_anything_is_created(
    tmp_path: Path, script: str, args: list[str]
) -> None:
    """``hydra.job.chdir=true`` made a run look for its data under its run directory (``<run dir>/data``: "files
    missing" for CIFAR-10 kept in ``./data``), and a relative ``ckpt_path=`` there too."""
    logs = tmp_path / "logs"
    overrides = [*args, "hydra.job.chdir=true", "logger=none", f"paths.log_dir={logs}"]
    result = run_app_in_process(overrides, cwd=tmp_path, env=SHORT, script=script)
    assert result.returncode == 1 and not logs.exists()
    assert result.stderr.strip().splitlines() == [
        "hydra.job.chdir=true: runs read relative paths (paths.*, the data, ckpt_path=) from the directory they start "
        "in and write their outputs into the run directory by its full path; in the run directory they would look "
        "for the data under it. Leave hydra.job.chdir=false (the default)."
    ]


def test_a_run_directory_that_exists_but_cannot_be_written_is_one_line(capfd: pytest.CaptureFixture) -> None:
    """A read-only directory passed ``mkdir(exist_ok=True)`` and failed in Hydra's log file handler, in a traceback.
    Root writes anywhere, so there the check runs in a child process as the unprivileged user 65534."""
    from labelsmooth.cli.hydra_callbacks import make_directory

    parent = Path(tempfile.mkdtemp())  # /tmp/...: reachable by that user, unlike pytest's tmp_path (mode 700)
    read_only = parent / "read_only"
    read_only.mkdir()
    parent.chmod(0o755)
    read_only.chmod(0o555)
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's lines reach the parent through the exit code and stderr)
        code = 0
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            make_directory(str(read_only), "hydra.run.dir")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(child, 0)
    read_only.chmod(0o755)
    shutil.rmtree(parent)
    assert os.waitstatus_to_exitcode(status) == 1
    assert capfd.readouterr().err.strip().splitlines() == [
        f"hydra.run.dir={read_only}: cannot write in the directory (Permission denied). Choose a writable place "
        "with hydra.run.dir=... or paths.log_dir=... (LABELSMOOTH_ROOT moves outputs/ too)."
    ]


@pytest.mark.parametrize("launcher", ["basic", "fused"])
def test_a_sweeps_resume_that_is_not_true_or_false_is_refused_before_any_job(tmp_path: Path, launcher: str) -> None:
    """``resume_sweep=no`` was read as true: the jobs completed in the directory were skipped, exit code 0."""
    done = tmp_path / "sweep" / "0"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text('{"status": "completed"}')
    args = ["-m", "seed=0", "resume_sweep=no", f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = run_app_in_process([*args, "logger=none"], cwd=tmp_path, env=SHORT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["ConfigurationError: resume_sweep=no must be true or false"]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["0"]


def test_precise_bn_without_its_callback_is_refused(tmp_path: Path) -> None:
    from labelsmooth.cli.checks import check_precise_bn
    from labelsmooth.cli.schema import validate_run_config
    from tests.conftest import compose_train_config

    check_precise_bn(compose_train_config(["precise_bn=5"], output_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="precise_bn=5 needs the PreciseBatchNorm callback"):
        check_precise_bn(compose_train_config(["callbacks=none", "precise_bn=5"], output_dir=tmp_path))
    with pytest.raises(
        ConfigurationError, match=r"^precise_bn=-1 must be an integer >= 0 \(training batches; 0: off\)"
    ):
        validate_run_config(compose_train_config(["precise_bn=-1"], output_dir=tmp_path))  # before check_precise_bn


def test_a_negative_diagram_interval_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_app_in_process(["callbacks.calibration.plot_every_n_epochs=-1", "debug=fast"], tmp_path, env=SHORT)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ConfigurationError: callbacks.calibration.plot_every_n_epochs=-1 must be an integer >= 0" in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["smoothing=gamm"],
            "ConfigurationError: smoothing=gamm is not an option of smoothing: the options are binary, bootstrap_hard,",
        ),
        (["-m", "smoothing=none,gamm", "seed=0"], "ConfigurationError: smoothing=gamm is not an option of smoothing"),
        (["model=mpl"], "ConfigurationError: model=mpl is not an option of model: the options are mlp, mlp_seed, "),
        (["model=mezzini2019/cifr10"], "ConfigurationError: model=mezzini2019/cifr10 is not an option of model: the "),
        (  # Hydra's own groups: the options of its plugins too
            ["-m", "hydra/launcher=fusd", "seed=0"],
            "ConfigurationError: hydra/launcher=fusd is not an option of hydra/launcher: the options are basic, fused, "
            "joblib, parallel, slurm, submitit_local, submitit_slurm",
        ),
        (["hydra/sweeper=optun"], "ConfigurationError: hydra/sweeper=optun is not an option of hydra/sweeper: the "),
    ],
)
def test_an_unknown_group_option_is_one_line_before_hydra_composes(tmp_path: Path, args: list[str], line: str) -> None:
    """Hydra's own answer is some twenty lines (the options, then its search path)."""
    result = run_app_in_process([*args, "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, env=SHORT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith(line)
    closest = {"model=mpl": "mlp", "model=mezzini2019/cifr10": "mezzini2019/cifar10", "hydra/sweeper=optun": "optuna"}
    close = closest.get(args[-1], "fused" if "hydra/launcher=fusd" in args else "gamma")
    assert result.stderr.strip().endswith(f"(did you mean {close}?)")
    assert "mezzini2019/" not in result.stderr or "cifr10" in result.stderr  # the options at the value's depth
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (  # gamma and focal have a gamma, the default uniform has none: Hydra composes the sweep's base config first
            ["smoothing=gamma,focal", "smoothing.gamma=0.5"],
            "ConfigurationError: smoothing.gamma=0.5: a sweep's config is composed first with the default "
            "smoothing=uniform, which has no gamma: write ++smoothing.gamma=0.5 to set it in every job of the sweep",
        ),
        (
            ["smoothing=gamma,uniform", "smoothing.epsilon=0.1"],
            "ConfigurationError: smoothing.epsilon=0.1 is not a setting of smoothing=gamma, swept here",
        ),
        (  # a sweep preset's sweeps; a list of the command line replaces the preset's
            ["sweep=strategies", "smoothing.epsilon=0.2"],
            "ConfigurationError: smoothing.epsilon=0.2 is not a setting of smoothing=none, smoothing=gamma, swept by "
            "sweep=strategies",
        ),
        (
            ["sweep=strategies", "smoothing=none,uniform", "smoothing.epsilon=0.2"],
            "ConfigurationError: smoothing.epsilon=0.2 is not a setting of smoothing=none, swept here",
        ),
        (
            ["augment=mixup,cutmix", "augment.prob=1.5"],
            "ConfigurationError: augment.prob=1.5: a sweep's config is composed first with the default augment=none",
        ),
    ],
)
def test_a_setting_of_a_swept_group_that_an_option_lacks_is_one_line(
    tmp_path: Path, args: list[str], line: str
) -> None:
    """Hydra stopped in six lines (``Could not override``) whose advice, ``+``, the jobs' options then refuse."""
    result = run_app_in_process(
        ["-m", *args, "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, env=SHORT
    )
    assert result.returncode == 1 and result.stderr.startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "sweep").exists()


def test_the_options_of_hydras_groups_that_hydra_or_its_plugins_provide_pass() -> None:
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import refuse_unknown_options

    for app in ("train", "eval"):
        refuse_unknown_options(
            ["hydra/launcher=joblib", "hydra/sweeper=optuna", "hydra/job_logging=none"], CONFIG_DIR, app
        )
        refuse_unknown_options(["hydra/launcher=fused", "hydra/sweeper=basic", "~hydra/launcher"], CONFIG_DIR, app)
        refuse_unknown_options(["hydra/launcher='joblib'", "hydra/sweeper='optuna'"], CONFIG_DIR, app)  # Hydra unquotes
    refuse_unknown_options(["model='mlp'", "smoothing='gamma'"], CONFIG_DIR, "train")


@pytest.mark.parametrize(
    ("app", "override", "line"),
    [
        ("eval", "model=resnet_v1", "model=resnet_v1 is not a setting of eval.py: it has no config group 'model' (its "
         "groups are dataset, logger, paths, trainer)"),
        ("eval", "+smoothing=gamma", "+smoothing=gamma is not a setting of eval.py: it has no config group "),
        ("train", "+model=mlp", "+model=mlp: the config has the group model already; write model=mlp (without +) to "
         "choose another"),
    ],
)  # fmt: skip
def test_a_group_the_app_does_not_have_or_has_already_is_one_line(app: str, override: str, line: str) -> None:
    """``eval.py model=...`` was Hydra's three lines advising ``+model=...``, which then ran with the setting unread
    (an evaluation takes the checkpoint's own model); ``train.py +model=mlp`` Hydra's "Multiple values for model"."""
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import refuse_unknown_options

    with pytest.raises(ConfigurationError) as refused:
        refuse_unknown_options(["ckpt_path=x.ckpt", override], CONFIG_DIR, app)
    assert str(refused.value) == line or str(refused.value).startswith(line)
    refuse_unknown_options(
        ["ckpt_path=x.ckpt", "dataset=digits", "trainer=cpu"] if app == "eval" else [], CONFIG_DIR, app
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["hydra/launcher=fused", "hydra.launcher.max_member=2"], "hydra.launcher.max_member=2 is not a setting of "
         "hydra/launcher=fused: its settings are batching, max_members"),
        (["hydra/launcher=fused", "+hydra.launcher.foo=1"], "+hydra.launcher.foo=1 is not a setting of "),
        (["hydra.launcher.max_members=2"], "hydra.launcher.max_members=2 is not a setting of hydra/launcher=basic: it "
         "takes no settings (max_members is a setting of hydra/launcher=fused)"),
    ],
)  # fmt: skip
def test_a_setting_the_launcher_does_not_take_is_one_line(args: list[str], line: str) -> None:
    """Hydra's five lines ("Key 'max_member' is not in struct") named neither the launcher nor its settings, and
    their advice, ``+hydra.launcher.max_member=2``, failed in the launcher's constructor."""
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import refuse_unknown_options

    with pytest.raises(ConfigurationError) as refused:
        refuse_unknown_options(["-m", "seed=0,1", *args], CONFIG_DIR, "train")
    assert str(refused.value).startswith(line)
    refuse_unknown_options(["-m", "hydra/launcher=fused", "hydra.launcher.max_members=2"], CONFIG_DIR, "train")
    refuse_unknown_options(["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], CONFIG_DIR, "train")
    refuse_unknown_options(["-m", "hydra/launcher=basic,joblib"], CONFIG_DIR, "train")  # Hydra's one line: no sweep
    refuse_unknown_options(["+model@teacher_model=resnet_v1"], CONFIG_DIR, "train")  # a group at another place


def test_hydra_full_error_shows_hydras_own_report_of_an_unknown_option(tmp_path: Path) -> None:
    result = run_app_in_process(["smoothing=gamm", "logger=none"], tmp_path, env={**SHORT, "HYDRA_FULL_ERROR": "1"})
    assert result.returncode == 1
    assert "Could not find 'smoothing/gamm'" in result.stderr and "ConfigurationError" not in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["smoothing.gama=0.8"], "smoothing.gama=0.8 is not a setting: UniformSmoothing takes no parameter 'gama' "),
        (["smoothing=gamma", "smoothing.gama=0.8"], "(it takes: num_classes, gamma); did you mean smoothing.gamma?"),
        # the strategy's parameter without the strategy: which options take it
        (
            ["smoothing.gamma=0.8"],
            "(it takes: num_classes, epsilon); the options of smoothing that take gamma: focal, "
            "focal_adaptive, gamma (e.g. smoothing=gamma smoothing.gamma=0.8)",
        ),  # fmt: skip
        (["-m", "seed=0,1", "trainer.max_step=3"], "trainer.max_step=3 is not a setting: Trainer takes no parameter"),
        (["sed=3"], "sed=3 is not a setting (did you mean seed? the top-level settings are analysis, augment, "),
        (["++sed=3"], "++sed=3 is not a setting (did you mean seed? "),
        # a preset whose sweeper chooses the experiment per job: Hydra composes the command line's settings first
        (["-m", "sweep=seed_000", "model.backprop=gradient"], "the options of model that take backprop: mlp_seed"),
    ],
)
def test_a_setting_the_class_does_not_take_is_one_line_before_hydra_composes(
    tmp_path: Path, args: list[str], line: str
) -> None:
    """Hydra's own answer is five lines ("Could not override ... Key 'gama' is not in struct ...") that do not say
    which settings there are."""
    result = run_app_in_process([*args, "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, env=SHORT)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("ConfigurationError: ")
    assert line in result.stderr
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize(
    "command",
    [
        "smoothing=gamma smoothing.gamma=0.8",
        "-m smoothing=gamma smoothing.gamma=0.6,0.8,1.0 seed=0,1,2",
        "-m hydra/launcher=fused smoothing=none,uniform,gamma seed=0,1,2",
        "sweep=strategies",
        "sweep=gamma_grid smoothing.gamma=0.5,1.0",  # the preset chooses smoothing=gamma among its sweeper's params
        "experiment=mezzini2019 dataset=cifar10 model.depth=8",
        "experiment=distill distill.alpha=0.3 teacher_ckpt=x.ckpt",
        "trainer=gpu trainer.devices=2 model=resnet20_v1 model.bn_momentum=0.01",
        "paths.data_dir=/data callbacks.checkpoint.dirpath=/x logger.project=p ++logger.notes=n",
        "model=mezzini2019/cifar10",
        "model=resnet_v1 model.depth=8 trainer.max_epochs=1 +trainer.max_steps=5",
        "callbacks.calibration.plot_every_n_epochs=2 callbacks.lr_monitor=null ~logger",
        "optimizer=sgd optimizer.momentum=0.9 scheduler=multistep scheduler.milestones=[1,2]",
        "model=timm model.name=resnet18 augment=mixup augment.mixup_alpha=0.4 strategy_schedule=linear",
        "trainer=ddp trainer.devices=2 smoothing=focal smoothing.gamma=2 ~augment",
        "seed=3 figures=false num_threads=1 tags=[a,b] n_bins=10 precise_bn=0 resume_sweep=true hydra.verbose=true",
        "++seed=4 ++trainer.max_steps=5 trainer.max_epochs=-1 scheduler=none",
    ],
)
def test_the_option_check_lets_valid_command_lines_through(command: str) -> None:
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import refuse_unknown_options

    refuse_unknown_options(command.split(), CONFIG_DIR, "train")


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (
            "experiment=mezzini2019 dataset=cifar10 model.widht=3",
            "model.widht=3 is not a setting: ResNetV2 takes no parameter 'widht' (it takes: num_classes, in_channels,",
        ),
        ("experiment=mezzini2019 sed=3", "sed=3 is not a setting (did you mean seed? the top-level settings are "),
        ("experiment=distill distill.alpah=0.3", "DistillationLoss takes no parameter 'alpah' (it takes: alpha, "),
        ("trainer=gpu trainer.devics=2", "trainer.devics=2 is not a setting: Trainer takes no parameter 'devics'"),
        ("model=resnet20_v1 model.widht=3", "model.widht=3 is not a setting: ResNetV1 takes no parameter 'widht'"),
        (
            "trainer.limit_train_batches=2",
            "trainer.limit_train_batches=2 is not in the config: trainer has no key 'limit_train_batches', which "
            "Trainer takes; add it with +trainer.limit_train_batches=2",
        ),
        (
            "paths.outptu_dir=x",
            "paths.outptu_dir=x is not a setting: paths has no key 'outptu_dir' (its keys: data_dir, log_dir, "
            "output_dir, root_dir); did you mean paths.output_dir?",
        ),
        ("callbacks.calibratoin.figures=false", "callbacks has no key 'calibratoin' (its keys: calibration, "),
        ("callbacks.checkpoint.dirpth=x", "did you mean callbacks.checkpoint.dirpath?"),
        ("logger.projct=x", "logger.projct=x is not a setting: logger has no key 'projct' (its keys: entity,"),
        ("distill.alpha=0.3", "distill.alpha=0.3 is not a setting: distill is null, so it has no key 'alpha'"),
        ("seed.x=1", "seed.x=1 is not a setting: seed is a value (0), which has no keys"),
        ("experiment.x=1", "experiment is null, so it has no key 'x'; choose an option first, experiment=<option> ("),
    ],
)
def test_a_setting_the_config_does_not_have_is_refused_in_one_line(command: str, line: str) -> None:
    """Hydra's struct mode refuses these in five lines; a global-package group (experiment=) or an option that
    inherits its keys (trainer=gpu, model=resnet20_v1) is composed by Hydra first, the others read from the files."""
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import refuse_unknown_options

    with pytest.raises(ConfigurationError) as refused:
        refuse_unknown_options(command.split(), CONFIG_DIR, "train")
    assert line in str(refused.value) and "\n" not in str(refused.value)


def test_the_option_check_reads_the_overrides_around_hydras_flags_and_leaves_other_sources_to_hydra() -> None:
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.options import flags_first, refuse_unknown_options

    # Hydra's parser fails on a flag between overrides ("unrecognized arguments"): the flags go first
    assert flags_first(["seed=1", "-m", "seed=2", "--info", "config", "x=1"]) == [
        "-m",
        "--info",
        "config",
        "seed=1",
    ] + [
        "seed=2",
        "x=1",
    ]
    assert flags_first(["--config-dir", "/c", "a=1", "--info", "b=2"]) == ["--config-dir", "/c", "--info", "a=1", "b=2"]
    with pytest.raises(
        ConfigurationError, match=r"^--mutlirun is not an option of eval.py \(did you mean --multirun\?"
    ):
        flags_first(["--mutlirun", "seed=0"], "eval.py")

    with pytest.raises(ConfigurationError, match="^smoothing=gamm is not an option"):
        refuse_unknown_options(["--cfg", "job", "smoothing=gamm", "-m"], CONFIG_DIR, "train")
    refuse_unknown_options(["--config-dir", "/elsewhere", "smoothing=gamm"], CONFIG_DIR, "train")
    refuse_unknown_options(["hydra.searchpath=[file://bench/conf]", "dataset=synthetic_cifar"], CONFIG_DIR, "train")


def test_an_interrupted_sweep_job_names_its_sweep_directory(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.errors import interruption_message

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        message = interruption_message(KeyboardInterrupt(), multirun=True)
    finally:
        HydraConfig.instance().cfg = None
    assert message == (
        f"stopped by Ctrl-C; to continue from its last checkpoint, run the same command again with resume_sweep=true "
        f"hydra.sweep.dir={tmp_path} (completed jobs are skipped, interrupted ones continue)"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["callbacks.checkpoint.monitor=val/accc"], "callbacks.checkpoint.monitor=val/accc is not a validation metric: "
         "did you mean val/acc?"),
        (["callbacks.checkpoint.monitor=test/acc"], "callbacks.checkpoint.monitor=test/acc is not a validation metric"),
        (["callbacks.checkpoint.mode=maxx"], "callbacks.checkpoint.mode=maxx must be min or max"),
        (["callbacks.checkpoint.monitor=val/nll"], "callbacks.checkpoint.mode=max would keep the checkpoint with the "
         "worst val/nll (the lowest is the best): set callbacks.checkpoint.mode=min"),
        (["callbacks.checkpoint.monitor=val/acc_best", "callbacks.checkpoint.mode=min"],
         "callbacks.checkpoint.mode=min"),
    ],
)  # fmt: skip
def test_a_checkpoint_selection_that_cannot_work_is_refused_before_training(
    args: list[str], line: str, tmp_path: Path
) -> None:
    """Lightning looks the monitored name up only after the first epoch's validation, and keeps the checkpoint the
    mode asks for, the worst one included."""
    from labelsmooth.cli.checks import check_checkpoint_monitor
    from tests.conftest import compose_train_config

    with pytest.raises(ConfigurationError) as refused:
        check_checkpoint_monitor(compose_train_config(args, output_dir=tmp_path))
    assert str(refused.value).startswith(line)


@pytest.mark.parametrize(
    "args", [[], ["callbacks.checkpoint.monitor=val/nll_ts", "callbacks.checkpoint.mode=min"],
             ["callbacks.checkpoint.monitor=val/confidence"], ["callbacks.checkpoint.monitor=train/loss"],
             ["callbacks.checkpoint.monitor=null"], ["callbacks.checkpoint=null"]],
)  # fmt: skip
def test_checkpoint_selections_that_work_pass(args: list[str], tmp_path: Path) -> None:
    from labelsmooth.cli.checks import check_checkpoint_monitor
    from tests.conftest import compose_train_config

    check_checkpoint_monitor(compose_train_config(args, output_dir=tmp_path))


def test_every_name_a_checkpoint_may_monitor_is_logged_by_validation(tmp_path: Path) -> None:
    """The names ``check_checkpoint_monitor`` accepts under ``val/`` are the ones a validation epoch logs (val/nll_ts
    where the checkpoint monitors it)."""
    import torch

    from labelsmooth.calibration.metrics import ClassificationMetrics
    from labelsmooth.cli.build import build_datamodule, build_module
    from labelsmooth.module import VALIDATION_RECORDS
    from tests.conftest import compose_train_config

    selection = ["callbacks.checkpoint.monitor=val/nll_ts", "callbacks.checkpoint.mode=min"]
    cfg = compose_train_config(["model=mlp", *selection], output_dir=tmp_path)
    module = build_module(cfg, build_datamodule(cfg.dataset))
    module.start_validation(sanity_checking=False)
    module.update_validation(torch.randn(8, 10), torch.arange(8), sanity_checking=False)
    logged = module.end_validation(sanity_checking=False, fitting=True, epoch=0)
    assert {f"val/{name}" for name in ClassificationMetrics.NAMES} | set(VALIDATION_RECORDS) <= set(logged)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["model=timm", "model.name=resnet_nope"], "ConfigurationError: model.name='resnet_nope' is not a timm"),
        (["model=timm", "model.name=vit_tiny_patch16_224"], "ConfigurationError: the model (VisionTransformer) does "
         "not accept the data set's inputs of shape (3, 32, 32)"),
        (["model=timm", "model.pretrained=/nowhere/weights.pth"], "MissingFileError: model.pretrained=/nowhere/"),
        (["model=resnet_v1", "model.depth=21"], "ConfigurationError: model.depth=21 is not valid for ResNet v1"),
        (["model=timm", "+model.bn_momentum=0.01"], "ConfigurationError: model.bn_momentum=0.01: the model resnet18 "
         "does not take 'bn_momentum' (TypeError: ResNet.__init__() got an unexpected keyword argument"),
    ],
)  # fmt: skip
def test_a_model_that_cannot_be_built_for_the_data_is_refused_before_a_download(
    args: list[str], line: str, tmp_path: Path
) -> None:
    """The network is built on the meta device for the input shape the data set config declares."""
    data = ["dataset=cifar10", "dataset.download=false", f"paths.data_dir={tmp_path}", "logger=none"]
    result = run_app_in_process([*args, *data], cwd=tmp_path, env=SHORT)
    assert result.returncode == 1 and result.stderr.startswith(line), result.stderr
    assert "DatasetNotFoundError" not in result.stderr


def test_a_data_module_of_a_fixed_shape_declares_it_so_the_model_is_checked_before_its_data(
    tmp_path: Path, monkeypatch
) -> None:
    """digits (8x8, grey) declares no shape in its config; its data module does."""
    from labelsmooth.data import digits

    monkeypatch.setattr(digits, "read_digits", lambda: pytest.fail("the data set was read"))
    result = run_app_in_process(["model=timm", "+model.bn_momentum=0.01", "logger=none"], cwd=tmp_path, env=SHORT)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("ConfigurationError: model.bn_momentum=0.01: the model resnet18 does not take")


@pytest.mark.parametrize("duration", ["00:12:00:00", "1:00:00:30", "{hours:12}", "{days:1,minutes:30}"])
def test_a_duration_lightning_reads_is_a_valid_max_time(duration: str, tmp_path: Path) -> None:
    from labelsmooth.cli.schema import validate_run_config

    validate_run_config(compose_train_config([f"+trainer.max_time={duration}"], output_dir=tmp_path))


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["+foo.bar=1"], "ConfigurationError: +foo.bar=1 is not a setting: nothing reads a top-level key 'foo' "),
        (["+trainer.limit_val_batches=0"], "ConfigurationError: trainer.limit_val_batches=0 cannot make a run: "),
        (["+trainer.strategy=dpp"], "ConfigurationError: trainer.strategy=dpp is not a Lightning strategy: auto, or "),
        (["model=timm", "+model.drop_rate=2.0"], "ConfigurationError: the model (ResNet) fails on a zero batch of "
         "the data set's shape (1, 8, 8): dropout probability has to be between 0 and 1, but got 2.0; check its "
         "model.* settings (they are model.name='resnet18', model.pretrained=False, model.pass_image_size=False, "
         "model.drop_rate=2.0)"),
        # Lightning's three lists of choices, each once (64 and '64' alike)
        (["trainer.precision=abc"], "ConfigurationError: trainer.precision=abc must be one of 64, 32, 16, "
         "'transformer-engine', 'transformer-engine-float16', '16-true', '16-mixed', 'bf16-true', 'bf16-mixed', "
         "'32-true', '64-true', 'bf16' (or null)"),
        (["~trainer.max_epochs"], "ConfigurationError: trainer.max_epochs=null must be an integer >= 1 (unless "),
        (["+trainer.max_steps=0"], "ConfigurationError: trainer.max_steps=0 cannot make a run: "),
        (["+trainer.val_check_interval=0"], "ConfigurationError: trainer.val_check_interval=0 cannot make a run: "),
        (["+trainer.limit_train_batches=1.5"], "ConfigurationError: trainer.limit_train_batches=1.5 cannot make a run"),
        (["resume=/nonexistent/run"], "ConfigurationError: resume=/nonexistent/run: nothing to resume: no such run "),
        (["resume=data"], "ConfigurationError: resume=data: nothing to resume: data is not a run's directory (no "),
        (["~seed"], "ConfigurationError: ~seed: a run needs seed; give it a value instead of removing it"),
        (["+dataset.foo=1"], "ConfigurationError: dataset.foo=1 is not a setting: DigitsDataModule takes no parameter "
         "'foo' (it takes: batch_size, eval_batch_size, "),
        (["dataset.num_classes=abc"], "ConfigurationError: dataset.num_classes=abc must be an integer >= 2 (or null)"),
        (["dataset.eval_batch_size=0"], "ConfigurationError: dataset.eval_batch_size=0 must be an integer >= 1"),
        (["trainer.devices=0"], "ConfigurationError: trainer.devices=0 must be a count >= 1, a list of device ids"),
        (["trainer.devices=-2"], "ConfigurationError: trainer.devices=-2 must be a count >= 1, a list of device ids"),
        (["trainer=cpu", "trainer.devices=[0]"], "ConfigurationError: trainer.devices=[0]: on the CPU give a number of "
         "processes, not ids"),
        (["model.base_width=0"], "ConfigurationError: model.base_width=0 must be an integer >= 1"),
        (["model=timm", "model.name=resnet10t", "+model.act_layer=nope"], "ConfigurationError: the model resnet10t "
         "refuses its settings (KeyError: 'nope'); they are model.name='resnet10t', "),
        (["model.l2=-1"], "ConfigurationError: model.l2=-1 must be a finite number >= 0"),
        (["optimizer.lr=0"], "ConfigurationError: optimizer.lr=0 must be a number > 0 (the learning rate)"),
        (["optimizer.lr=inf"], "ConfigurationError: optimizer.lr=inf must be a number > 0 (the learning rate)"),
        (["+trainer.gradient_clip_algorithm=sum"], "ConfigurationError: trainer.gradient_clip_algorithm=sum must be "
         "one of norm, value (or null)"),
        (["+trainer.gradient_clip_val=-1"], "ConfigurationError: trainer.gradient_clip_val=-1 must be a number >= 0"),
        (["+trainer.gradient_clip_val=1", "+trainer.gradient_clip_algorithm=norm", "+dataset.foo=1"],
         "ConfigurationError: dataset.foo=1 is not a setting"),  # the algorithm passes (Lightning reads NORM too)
        (["callbacks.checkpoint.save_top_k=-2"], "ConfigurationError: callbacks.checkpoint: Invalid value for "
         "save_top_k=-2. Must be >= -1"),
        (["callbacks.nan_guard.check_every_n_steps=0"], "ConfigurationError: callbacks.nan_guard.check_every_n_steps=0 "
         "must be >= 1"),
        (["augment=mixup", "smoothing=label_relaxation"], "ConfigurationError: The batch augment BatchMixing mixes "
         "targets, but the smoothing strategy LabelRelaxation has no target distribution"),
        (["logger.offline=maybe"], "ConfigurationError: logger.offline=maybe must be true or false"),
        (["logger=csv", "logger.name=[1,2]"], "ConfigurationError: logger.name=[1, 2] must be a string (or null)"),
        (["callbacks.calibration.predictions_max_values=-1"], "ConfigurationError: "
         "callbacks.calibration.predictions_max_values=-1 must be an integer >= 0"),  # the key as the config has it
        (["strategy_schedule=linear", "strategy_schedule.start=5"], "ConfigurationError: strategy_schedule=linear sets "
         "epsilon=5 at epoch 0: smoothing.epsilon=5.0 is out of range: it must lie in [0, 1)."),
        (["+analysis.foo=1"], "ConfigurationError: analysis.foo is not a setting: analysis takes projection_classes, "),
        (["scheduler=keras_step", "scheduler.milestones=[0,1]", "scheduler.factors=[-1,0.5]"], "ConfigurationError: "
         "scheduler.factors=[-1, 0.5] must be finite and > 0 and scheduler.milestones=[0, 1] epochs >= 0"),
        (["+scheduler.last_epoch=5"], "ConfigurationError: the optimizer or learning-rate scheduler refuses its "
         "settings (KeyError: "),
        (["dataset=mnist", "dataset.image_size=-5"], "ConfigurationError: dataset.image_size=-5 must be an integer >= "
         "1 (pixels)"),
        (["dataset=mnist", "dataset.channels=0"], "ConfigurationError: dataset.channels=0 must be 1 or 3"),
        (["dataset.normalize=none", "dataset.input_range=[0,1e400]"], "ConfigurationError: "
         "dataset.input_range=[0, inf] must be [low, high], finite, with low < high"),
        # a segmentation fault in torch; a list that the failed run's metrics.json could not hold; Hydra's traceback
        (["num_threads=100000"], "ConfigurationError: num_threads=100000 must be an integer in [1, "),
        (["seed=[]"], "ConfigurationError: seed=[] must be an integer in [0, 4294967295]"),
        (["dataset=null"], "ConfigurationError: dataset=null is not an option of dataset: the options are "),
        (["dataset.num_classes=-1"], "ConfigurationError: dataset.num_classes=-1 must be an integer >= 2 (or null)"),
        (["dataset.num_classes=0"], "ConfigurationError: dataset.num_classes=0 must be an integer >= 2 (or null)"),
        (["dataset.num_classes=11"], "ConfigurationError: dataset.num_classes=11: DigitsDataModule has 10 classes"),
        (["dataset=mnist", "dataset.num_classes=9"], "ConfigurationError: dataset.num_classes=9: MNISTDataModule has "
         "10 classes"),
        (["n_bins=1000000000"], "ConfigurationError: n_bins=1000000000 must be an integer in [1, 10000]"),
        (["dataset.split_seed=-1"], "ConfigurationError: dataset.split_seed=-1 must be an integer in [0, 4294967295]"),
        (["dataset.split_seed=99999999999999999999"], "ConfigurationError: dataset.split_seed=99999999999999999999 "
         "must be an integer in [0, 4294967295]"),
        (["+optimizer.eps=0"], "ConfigurationError: optimizer.eps=0 must be a number > 0"),
        (["trainer.check_val_every_n_epoch=5", "trainer.max_epochs=1"], "ConfigurationError: "
         "trainer.check_val_every_n_epoch=5 exceeds trainer.max_epochs=1: it ends first"),
        (["trainer.max_epochs=null"], "ConfigurationError: trainer.max_epochs=null must be an integer >= 1 (unless "),
        (["+trainer.num_sanity_val_steps=-2"], "ConfigurationError: trainer.num_sanity_val_steps=-2 must be an "
         "integer >= -1"),
        (["dataset=omniglot", "smoothing.epsilon=-0.1"], "ConfigurationError: smoothing.epsilon=-0.1 is out of range: "
         "it must lie in [0, 1)."),  # a data set that counts its classes from its files
        (["dataset=omniglot", "smoothing=gamma", "smoothing.gamma=2"], "ConfigurationError: smoothing.gamma=2 is out "
         "of range: it must lie in (1/K, 1]."),
        (["smoothing=prior", "smoothing.prior=abc"], "ConfigurationError: smoothing.prior='abc' must be a list of 10 "
         "numbers."),
        (["+trainer.limit_train_batches=nan"], "ConfigurationError: trainer.limit_train_batches=nan cannot make a run"),
        (["+callbacks.foo._target_=abc.def"], "ConfigurationError: callbacks.foo._target_=abc.def cannot be imported "),
        (["+dataset.channels=3"], "ConfigurationError: dataset.channels=3 is not a setting of digits: its 8×8 grey "),
        (["+scheduler.eta_min=1000"], "ConfigurationError: scheduler.eta_min=1000 exceeds optimizer.lr=0.001: the "
         "cosine would raise it"),
        (["trainer.log_every_n_steps=0"], "ConfigurationError: trainer.log_every_n_steps=0 must be an integer >= 1"),
        (["model=mlp_seed", "model.backprop=seed_numpy", "smoothing=target_range", "smoothing.loss=squared_error",
          "model.backprop_lr=nan"], "ConfigurationError: model.backprop=seed_numpy needs model.backprop_lr >= 0"),
        # a duration that Lightning's Timer cannot read failed after the data; an integer as an AttributeError
        (["+trainer.max_time=abc"], "ConfigurationError: trainer.max_time=abc must be a duration longer than 0: "
                                    "'DD:HH:MM:SS'"),
        (["+trainer.max_time=1"], "ConfigurationError: trainer.max_time=1 must be a duration"),
        (["+trainer.max_time=00:00:00:00"], "ConfigurationError: trainer.max_time=00:00:00:00 must be a duration"),
        (["+trainer.max_time={minutes:-1}"], "ConfigurationError: trainer.max_time={'minutes': -1} must be a dur"),
        (["+trainer.max_time={fortnights:1}"], "ConfigurationError: trainer.max_time={'fortnights': 1} must be a"),
        # Lightning's validations at times, which would select the checkpoint by the machine's speed: they failed
        # after the data (AttributeError in the project's own check of the interval)
        (["+trainer.val_check_interval=abc"], "ConfigurationError: trainer.val_check_interval=abc is not a number of "
         "batches or a fraction of an epoch: validations at times would depend on the machine's speed"),
        (["+trainer.val_check_interval=00:00:00:01", "trainer.check_val_every_n_epoch=null"],
         "ConfigurationError: trainer.val_check_interval=00:00:00:01 is not a number of batches or a fraction of an "),
        # read only when the files were opened, and then blamed on them
        (["dataset=dtd", "dataset.partition=0"], "ConfigurationError: dataset.partition=0 must be one of 1, 2, 3"),
        (["dataset=aircraft", "dataset.annotation_level=abc"],
         "ConfigurationError: dataset.annotation_level=abc must be one of 'variant', 'family', 'manufacturer'"),
        # accepted: the run recorded precise_bn=3 and recomputed nothing; the learning rate never decayed
        (["model=mlp", "precise_bn=3"], "ConfigurationError: precise_bn=3: the model (MLP) has no BatchNorm layer"),
        (["scheduler=multistep", "scheduler.milestones=[2,-1]"],
         "ConfigurationError: scheduler.milestones=[2, -1] must be epochs >= 0"),
        # Hydra's "Ambiguous value" over five lines (the sweep presets set the mode: tests/test_sweeps.py)
        (["sweep=strategies", "smoothing=none,gamma"], "ConfigurationError: smoothing=none,gamma is a sweep over "
         "several values: add -m (--multirun) to run one job per value, or choose one option (a preset's mode comes "
         "after Hydra chose the options)"),
        (["seed=0,1"], "ConfigurationError: seed=0,1 is a sweep over several values: add -m (--multirun) to run one "
         "job per value, or give one value (a list is seed=[...], a text with commas seed='...')"),
        (["smoothing=gamma", "smoothing.gamma=range(0.5,1,0.1)"],
         "ConfigurationError: smoothing.gamma=range(0.5,1,0.1) is a sweep over several values: add -m"),
        # torch failed to allocate them after the data, in a traceback
        (["model=mlp", "model.hidden_sizes=[1000000000]"], "ConfigurationError: the model (MLP) has 75,000,000,010 "
         "parameters, 279.4 GiB as float32: more than this machine's "),
        # Hydra's parser: its words over three lines, a caret, and no key
        (["smoothing.gamma=[1"], "ConfigurationError: smoothing.gamma=[1 cannot be parsed as an override (no viable "
         "alternative at input '[1'): give key=value, quoting a value"),
        (["a b=c"], "ConfigurationError: a b=c cannot be parsed as an override (' ' at character 2): give key=value"),
        (["-m", "seed=0,1", "smoothing.gamma=0.8)"], "ConfigurationError: smoothing.gamma=0.8) cannot be parsed as an "
         "override (extraneous input ')' expecting <EOF>)"),
        # Hydra's "Could not append to config" (three lines and a hint) or "Could not delete from config" (a line and
        # a hint), while it composed
        (["model=mlp", "+model.dropout=0.5"], "ConfigurationError: +model.dropout=0.5: model.dropout is in the config "
         "already (model.dropout=0.0): write model.dropout=0.5 to set it (+ adds a key the config lacks; "
         "++model.dropout=0.5 adds it or sets it)"),
        (["-m", "+seed=1,2"], "ConfigurationError: +seed=1,2: seed is in the config already (seed=0): write seed=1,2"),
        (["~model.depht"], "ConfigurationError: ~model.depht: model.depht is not in the config, so there is nothing "
         "to delete"),
        (["~ckpt_path"], "ConfigurationError: ~ckpt_path: ckpt_path is null, so there is nothing to delete"),
        # Hydra's traceback from its run directory's ${resume}; the callbacks' InterpolationKeyError, not naming ~n_bins
        (["~resume"], "ConfigurationError: ~resume: a run needs resume (hydra.run.dir reads it); give it a value "
         "instead of removing it"),
        (["~n_bins"], "ConfigurationError: ~n_bins: a run needs n_bins (callbacks.calibration.n_bins reads it); give "
         "it a value instead of removing it"),
        (["~trainer.max_epochs=5"], "ConfigurationError: ~trainer.max_epochs=5: trainer.max_epochs is 30 in the "
         "config, not 5: write ~trainer.max_epochs to delete it whatever its value"),
        # each job of the sweep failed in turn after composing ("Error executing job with overrides", three lines)
        (["-m", "model=mlp", "+model.foo=0.1,0.2"], "ConfigurationError: model.foo=0.1,0.2 is not a setting: MLP takes "
         "no parameter 'foo' (it takes: num_classes, in_channels, image_size, hidden_sizes, activation, dropout, "),
        # Hydra's "Key 'dirr' not in 'RunDir'" over four lines, without the keys there are
        (["hydra.run.dirr=x"], "ConfigurationError: hydra.run.dirr=x is not a setting: hydra.run has no key 'dirr' "
         "(its keys: dir); did you mean hydra.run.dir?"),
        (["hydra.job.chdri=true"], "ConfigurationError: hydra.job.chdri=true is not a setting: hydra.job has no key "
         "'chdri' (its keys: chdir, config, config_name, env_copy, env_set, id, name, num, override_dirname); did you "
         "mean hydra.job.chdir?"),
        # trained in full, then returned no number to the sweeper
        (["optimized_metric=val/acc_bets"],
         "ConfigurationError: optimized_metric=val/acc_bets is not a number the run records: did you mean "
         "val/acc_best?"),
    ],
)  # fmt: skip
def test_settings_that_cannot_make_a_run_stop_in_one_line_before_the_data(
    args: list[str], line: str, tmp_path: Path, monkeypatch
) -> None:
    """Each ran (or trained, then failed in its final test, or made the directory a mistyped resume= named), or was
    refused after the data was read, or in library code's words (a traceback, Hydra's three-line instantiation
    error), or trained with the setting meaning something else (``eval_batch_size=0``: the training batch size)."""
    from labelsmooth.data import digits

    monkeypatch.setattr(digits, "read_digits", lambda: pytest.fail("the data set was read"))
    logger = [] if any(arg.startswith("logger") for arg in args) else ["logger=none"]  # refused before it starts
    (tmp_path / "data").mkdir()  # a directory that no run wrote: resume=data leaves it empty
    result = run_app_in_process([*args, *logger, f"paths.log_dir={tmp_path}"], cwd=tmp_path, env=SHORT)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line) and not Path("/nonexistent").exists()
    assert not list((tmp_path / "data").iterdir())


@pytest.mark.parametrize(
    ("args", "batches"),
    [
        (["+trainer.val_check_interval=20"], 19),
        (["debug=fast", "+trainer.val_check_interval=4"], 3),
        (["debug=overfit", "+trainer.val_check_interval=5"], 2),  # the Trainer's limit, not the config's
    ],
)
def test_a_validation_interval_longer_than_an_epoch_is_one_line_before_training(
    args: list[str], batches: int, tmp_path: Path
) -> None:
    """Lightning refused it at the start of fit in a traceback; digits' 1,198 training images make 19 batches of 64
    (``debug=fast``: its ``limit_train_batches`` of 3). With ``check_val_every_n_epoch=null`` it is a setting."""
    common = ["model=mlp", "logger=none", "figures=false", f"paths.log_dir={tmp_path}"]
    result = run_app_in_process([*common, *args], cwd=tmp_path, env=SHORT)
    interval = args[-1].rpartition("=")[2]
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(
        f"ConfigurationError: trainer.val_check_interval={interval} exceeds the {batches} training batches of an "
        f"epoch: give at most {batches}, a fraction of an epoch in (0, 1], or trainer.check_val_every_n_epoch=null"
    )
    across = ["debug=fast", "+trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=null"]
    assert run_app_in_process([*common, *across, "trainer.max_epochs=2"], cwd=tmp_path, env=SHORT).returncode == 0
    # the Trainer's own limits count: fast_dev_run validates after its one batch, whatever the interval
    quick = ["debug=fast", "+trainer.val_check_interval=4", "+trainer.fast_dev_run=true"]
    assert run_app_in_process([*common, *quick], cwd=tmp_path, env=SHORT).returncode == 0


def test_a_model_built_on_the_meta_device_reads_no_weights_file(tmp_path: Path) -> None:
    """The check before the data builds the network without memory; a timm weights file is checked, not read."""
    import torch

    from labelsmooth.models import timm_model

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not a checkpoint")
    with torch.device("meta"):
        net = timm_model("resnet18", num_classes=3, in_channels=1, pretrained=str(weights))
    assert next(net.parameters()).device.type == "meta"


@pytest.mark.parametrize("launcher", ["parallel", "slurm", None])
def test_ctrl_c_in_the_process_that_launched_a_sweep_says_where_it_is(launcher: str | None, tmp_path: Path) -> None:
    """joblib's and SLURM's jobs run in other processes: Ctrl-C reaches the launching process outside any job
    (it printed joblib's 40-line traceback). A sweep's own launcher says so from inside its jobs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.errors import interruption_outside_a_job
    from labelsmooth.cli.hydra_callbacks import KnowTheSweep

    overrides = [f"hydra.sweep.dir={tmp_path}", "hydra.mode=MULTIRUN"]
    overrides += [f"hydra/launcher={launcher}"] if launcher else []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides, return_hydra_config=True)
    HydraConfig.instance().cfg = None
    assert (
        str(interruption_outside_a_job(KeyboardInterrupt())) == "Interrupted: stopped by Ctrl-C before the run started"
    )
    KnowTheSweep().on_multirun_start(cfg)
    try:
        message = str(interruption_outside_a_job(KeyboardInterrupt()))
    finally:
        HydraConfig.instance().cfg = None
    if launcher == "slurm":
        assert message == (
            "Interrupted: stopped waiting for the sweep's SLURM jobs, which go on running (squeue lists them, scancel "
            f"stops them); their outputs are written under {tmp_path}"
        )
    else:
        assert message.startswith("Interrupted: stopped by Ctrl-C; to continue from its last checkpoint, run the same")
        assert f"resume_sweep=true hydra.sweep.dir={tmp_path} (completed" in message


def test_an_unset_environment_variable_is_refused_where_hydra_makes_the_directories(monkeypatch) -> None:
    """Only the run's and sweep's directories are resolved in the launching process; a job's other settings may
    read a variable that its own environment sets (``hydra.job.env_set``, a SLURM node's)."""
    from labelsmooth.conf import CONFIG_DIR

    from labelsmooth.cli.argv import directory_settings, refuse_unset_environment

    monkeypatch.delenv("LABELSMOOTH_NOT_SET", raising=False)
    assert {"paths.log_dir", "hydra.run.dir", "hydra.sweep.dir"} <= directory_settings(CONFIG_DIR)
    for override in ("paths.log_dir=${oc.env:LABELSMOOTH_NOT_SET}", "hydra.sweep.dir=/x/${oc.env:LABELSMOOTH_NOT_SET}"):
        with pytest.raises(ConfigurationError, match=r"the environment variable LABELSMOOTH_NOT_SET is not set"):
            refuse_unset_environment([override], CONFIG_DIR)
    refuse_unset_environment(["paths.data_dir=${oc.env:LABELSMOOTH_NOT_SET}"], CONFIG_DIR)  # the job's to resolve
    refuse_unset_environment(["paths.log_dir=${oc.env:LABELSMOOTH_NOT_SET,/tmp}"], CONFIG_DIR)  # a default


def test_an_evaluation_split_smaller_than_the_processes_is_refused() -> None:
    """Under DDP each process evaluates its own samples, none repeated: with one validation sample for two
    processes the second had none, and the gathering of the metrics' states failed at the first validation."""
    from types import SimpleNamespace

    from labelsmooth.cli.data_checks import check_splits_cover_the_processes
    from labelsmooth.errors import ConfigurationError

    data = SimpleNamespace(val_set=[0], test_set=[0, 1, 2])
    with pytest.raises(ConfigurationError) as refused:
        check_splits_cover_the_processes(SimpleNamespace(world_size=2), data)
    assert str(refused.value) == (
        "the validation split holds 1 sample, fewer than the 2 processes that evaluate it: use fewer trainer.devices, "
        "or a larger split"
    )
    check_splits_cover_the_processes(SimpleNamespace(world_size=1), data)
    with pytest.raises(ConfigurationError, match="^the test split holds 3 samples, fewer than the 4 processes"):
        check_splits_cover_the_processes(
            SimpleNamespace(world_size=4), SimpleNamespace(val_set=[0] * 4, test_set=[0] * 3)
        )


def test_a_last_batch_of_one_sample_that_batchnorm_cannot_train_on_is_refused_before_training(tmp_path: Path) -> None:
    """Digits' 1169 training images at batch size 16 end each epoch in a batch of one; timm's resnet18 reduces 8×8
    images to 1×1 features, where BatchNorm cannot train on one sample: it failed at that batch, after a whole
    epoch, in a traceback. The Keras ResNet keeps 2×2 features there, and trains."""
    args = ["dataset.batch_size=16", "logger=none", "figures=false", "+trainer.max_steps=2"]
    refused = run_app_in_process(["model=timm", *args, f"paths.log_dir={tmp_path}"], cwd=tmp_path, env=SHORT)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(
        "ConfigurationError: the last training batch of each epoch holds one sample (1169 per process, "
        "dataset.batch_size=16), on which the model's BatchNorm cannot train"
    )
    trained = run_app_in_process(["model=resnet_v1", *args, f"paths.log_dir={tmp_path}"], cwd=tmp_path, env=SHORT)
    assert trained.returncode == 0, trained.stderr[-3000:]


def network_with_a_bug(bug: str = "zero", **settings: object) -> None:
    """A model class of the user's with a bug in its constructor."""
    return 1 / 0 if bug == "zero" else len(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bug", "error"), [("zero", "ZeroDivisionError: division by zero"),
                                            ("len", "TypeError: object of type 'int' has no len()")])  # fmt: skip
def test_a_bug_in_a_class_that_the_config_builds_keeps_its_traceback(bug: str, error: str, tmp_path: Path) -> None:
    """Hydra wraps an error raised in a ``_target_``'s constructor in its ``InstantiationException``, which it
    prints in a few lines without a traceback: the bug is raised as it is, so its traceback names the line. A
    ``TypeError`` raised in the project's or the user's code is a bug too, not a setting the model refuses (those
    are raised in torch's or timm's code)."""
    target = "model._target_=tests.test_errors.network_with_a_bug"
    args = ["model=mlp", target, f"+model.bug={bug}", "logger=none", f"paths.log_dir={tmp_path}"]
    result = run_app_in_process(args, cwd=tmp_path, env=SHORT)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "in network_with_a_bug" in result.stderr, result.stderr
    assert error in result.stderr and "InstantiationException" not in result.stderr and "refuses" not in result.stderr
