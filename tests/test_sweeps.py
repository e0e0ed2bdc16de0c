"""Sweeps as users run them: a tiny γ × seed grid in parallel, the report on it, resuming it, Optuna, SLURM."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from labelsmooth.cli.build import CONFIG_DIR
from labelsmooth.cli.hydra_callbacks import SayWhenNothingToResume
from labelsmooth.cli.train import completed_job
from labelsmooth.report.stats import mean_confidence_interval
from labelsmooth.runs.overrides import job_overrides
from tests.conftest import metrics_of, run_app_in_process

FAST = ["debug=fast", "logger=csv", "trainer.enable_progress_bar=false", "figures=false"]  # the report draws its own
GRID = ["smoothing=gamma", "smoothing.gamma=0.5,1.0", "seed=0,1"]


def run_report(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_app_in_process(args, cwd, script="report.py")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_tiny_sweep_report_and_resume(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "day" / "time"
    command = ["-m", *GRID, *FAST, f"hydra.sweep.dir={sweep}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    result = run_app_in_process(command, tmp_path)  # the launcher here; joblib's two workers are processes
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = metrics_of(sweep)
    assert sorted(jobs) == [0, 1, 2, 3] and all(m["status"] == "completed" for m in jobs.values())

    report = run_report([str(sweep)], cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    table = read_csv(sweep / "table_val_acc_best.csv")
    assert sorted(float(r["smoothing.gamma"]) for r in table) == [0.5, 1.0]
    text = (sweep / "report.md").read_text()
    for row in table:
        gamma = float(row["smoothing.gamma"])
        values = [m["val/acc_best"] for m in jobs.values() if m["smoothing.gamma"] == gamma]
        assert len(values) == 2 and row["n"] == "2" and row["seeds"] == "0;1"
        assert float(row["mean"]) == pytest.approx(sum(values) / 2, abs=1e-12)
        estimate = mean_confidence_interval(values)
        assert float(row["ci95_half_width"]) == pytest.approx(estimate.half_width, abs=1e-12)
        assert f"{100 * estimate.mean:.2f} ± {100 * estimate.half_width:.2f} (n=2)" in text
    for metric in ("test_ece", "test_ece_ts"):
        for row in read_csv(sweep / f"table_{metric}.csv"):
            key = metric.replace("test_", "test/")
            values = [m[key] for m in jobs.values() if m["smoothing.gamma"] == float(row["smoothing.gamma"])]
            assert float(row["mean"]) == pytest.approx(sum(values) / len(values), abs=1e-12)
    (compared,) = read_csv(sweep / "best_vs_baseline_val_acc_best.csv")
    assert compared["n_pairs"] == "2" and float(compared["baseline_smoothing.gamma"]) == 1.0
    for name in ("accuracy_vs_gamma.png", "ece_vs_gamma.png", "reliability_digits.png", "reliability_digits_ts.png",
                 "curves_digits.png"):  # fmt: skip
        assert (sweep / name).is_file(), name
    assert "None: every job completed." in text

    # Resume: job 1 "failed" and job 3 was killed before writing metrics.json; 0 and 2 are kept as they are.
    failed = {**jobs[1], "status": "failed", "error": "simulated"}
    (sweep / "1" / "metrics.json").write_text(json.dumps(failed))
    (sweep / "3" / "metrics.json").unlink()
    kept = {n: (sweep / str(n) / "metrics.json").read_bytes() for n in (0, 2)}
    report = run_report([str(sweep)], cwd=tmp_path)
    text = (sweep / "report.md").read_text()
    assert "(failed)" in text and "(incomplete)" in text and "simulated" in text

    # The sweep run again without resume_sweep=true, or with a typo: refused before any job, nothing written (its
    # multirun.yaml, which resume_sweep=true reads, neither); the unfinished jobs' checkpoints kept
    left = {path: path.read_bytes() for path in sweep.glob("*/checkpoints/*.ckpt")}
    left.update({path: path.read_bytes() for path in [*sweep.glob("*/metrics.json"), sweep / "multirun.yaml"]})
    for typo in ([], ["optimizer.lr=-1"]):
        result = run_app_in_process(["-m", *GRID, *FAST, *typo, f"hydra.sweep.dir={sweep}"], tmp_path)
        assert result.returncode == 1 and "test accuracy" not in result.stdout + result.stderr
        assert result.stderr == (
            f"hydra.sweep.dir={sweep} holds the jobs of an earlier sweep, left as they are: resume_sweep=true "
            "continues it (its own grid; jobs may be added at its end), a new sweep needs a new hydra.sweep.dir\n"
        )
        assert {path: path.read_bytes() for path in left} == left

    result = run_app_in_process(["-m", *GRID, *FAST, f"hydra.sweep.dir={sweep}", "resume_sweep=true"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test accuracy") + result.stderr.count("test accuracy") == 2  # two jobs trained
    assert (result.stdout + result.stderr).count("continues from its last checkpoint") == 2  # from their last.ckpt
    for number, content in kept.items():
        assert (sweep / str(number) / "metrics.json").read_bytes() == content
    assert all(m["status"] == "completed" for m in metrics_of(sweep).values())

    # The grid in another order numbers the jobs differently: refused before any job, every result left as it is.
    kept = {n: (sweep / str(n) / "metrics.json").read_bytes() for n in range(4)}
    reordered = ["smoothing=gamma", "smoothing.gamma=1.0,0.5", "seed=0,1"]
    result = run_app_in_process(["-m", *reordered, *FAST, f"hydra.sweep.dir={sweep}", "resume_sweep=true"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"resume_sweep=true: the grid differs from the one in {sweep}/multirun.yaml: job 0")
    for number, content in kept.items():
        assert (sweep / str(number) / "metrics.json").read_bytes() == content
    assert "test accuracy" not in result.stdout + result.stderr

    # Another job pointed by hand at job 0's directory is refused, and the job's .hydra/ files are put back (Hydra
    # wrote the refused run's): its config still says the γ it trained with, and so does the report.
    hydra_files = {p.name: p.read_bytes() for p in (sweep / "0" / ".hydra").glob("*.yaml")}
    assert hydra_files == {p.name: p.read_bytes() for p in (sweep / "0" / ".hydra" / "completed").glob("*.yaml")}
    by_hand = ["smoothing=gamma", "smoothing.gamma=0.7", "seed=0", *FAST, f"hydra.run.dir={sweep / '0'}"]
    result = run_app_in_process(by_hand, tmp_path)
    assert result.returncode == 1 and "holds the completed run of another job" in result.stderr
    assert {p.name: p.read_bytes() for p in (sweep / "0" / ".hydra").glob("*.yaml")} == hydra_files
    assert run_report([str(sweep)], cwd=tmp_path).returncode == 0
    assert sorted(float(r["smoothing.gamma"]) for r in read_csv(sweep / "table_val_acc_best.csv")) == [0.5, 1.0]


@pytest.mark.slow
def test_strategies_compared_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does label smoothing help here? none vs uniform vs γ over seeds, reported by strategy name. The default
    sweeper composes each job's config once (Hydra's basic sweeper composes it twice: to check, then to run it)."""
    composed: list[list[str]] = []
    compose = ConfigLoaderImpl.load_sweep_config
    monkeypatch.setattr(
        ConfigLoaderImpl, "load_sweep_config", lambda loader, *args: composed.append(args[1]) or compose(loader, *args)
    )
    sweep = tmp_path / "multirun" / "day" / "time"
    grid = ["sweep=strategies", "seed=0,1"]  # the preset: none,uniform,gamma x seeds (these win); no -m needed
    result = run_app_in_process([*grid, *FAST, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = metrics_of(sweep)
    assert len(jobs) == 6 and all(m["status"] == "completed" for m in jobs.values())
    assert len(composed) == 6 and len({tuple(job) for job in composed}) == 6

    report = run_report([str(sweep)], cwd=tmp_path)  # the swept key, smoothing, is found from the jobs
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Swept parameter: smoothing" in report.stdout
    table = {r["smoothing"]: r for r in read_csv(sweep / "table_val_acc_best.csv")}
    assert set(table) == {"gamma", "none", "uniform"}
    for name, row in table.items():
        values = [m["val/acc_best"] for m in jobs.values() if m["smoothing"] == name]
        assert row["n"] == "2" and float(row["mean"]) == pytest.approx(sum(values) / 2, abs=1e-12)
    (compared,) = read_csv(sweep / "best_vs_baseline_val_acc_best.csv")
    assert compared["baseline_smoothing"] == "none" and compared["n_pairs"] == "2"
    text = (sweep / "report.md").read_text()
    assert "| data set | smoothing = gamma | smoothing = none | smoothing = uniform |" in text
    assert "vs smoothing = none" in text
    for name in ("accuracy_vs_smoothing.png", "ece_vs_smoothing.png", "reliability_digits.png"):
        assert (sweep / name).is_file(), name


@pytest.mark.slow
def test_optuna_search_over_gamma_goes_on_after_a_failed_trial(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    result = run_app_in_process(
        [
            "hparams_search=gamma_optuna",
            "hydra/sweeper/sampler=random",
            "hydra.sweeper.params={smoothing.gamma:'choice(0.05,0.9)'}",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",  # as docs/sweeps.md shows
            *FAST,
            f"hydra.sweep.dir={sweep}",
        ],  # fmt: skip
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = {m["smoothing.gamma"]: m["status"] for m in metrics_of(sweep).values()}
    assert statuses == {0.9: "completed", 0.05: "failed"}  # γ must exceed 1/K = 0.1
    import optuna

    study = optuna.load_study(study_name="gamma-digits-resnet_v1", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]  # kept for the next invocation
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"] == {"smoothing.gamma": 0.9}
    completed = next(m for m in metrics_of(sweep).values() if m["status"] == "completed")
    assert best["best_value"] == pytest.approx(completed["val/acc_best"])


def test_an_optuna_study_kept_in_storage_draws_new_trials_in_its_next_search(tmp_path: Path) -> None:
    """With the sampler's configured seed alone, a second search of a study kept in ``storage`` drew the first
    one's parameters again (start-up draws are random): the same training, counted twice by the study."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    search = ["hparams_search=gamma_optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=1", *FAST]
    search += ["hydra.sweeper.params={smoothing.gamma:'interval(0.5,1.0)'}", f"hydra.sweeper.storage={storage}"]
    for attempt in ("first", "second"):
        result = run_app_in_process([*search, f"hydra.sweep.dir={tmp_path / attempt}"], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "Study gamma-digits-resnet_v1 holds 1 trials: its sampler is seeded 0 + 1" in result.stdout
    import optuna

    study = optuna.load_study(study_name="gamma-digits-resnet_v1", storage=storage)
    first, second = (trial.params["smoothing.gamma"] for trial in study.trials)
    assert first != second


def compose_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_launcher_and_search_presets_compose() -> None:
    slurm = compose_hydra(["hydra/launcher=slurm", "trainer.devices=1"])
    launcher = slurm.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == 1
    assert OmegaConf.select(slurm, "hydra.launcher.gpus_per_node") == 1
    on_cpu = compose_hydra(["hydra/launcher=slurm", "trainer=cpu"])
    assert OmegaConf.select(on_cpu, "hydra.launcher.gpus_per_node") == 0  # no GPU reserved for a CPU job
    two = compose_hydra(["hydra/launcher=slurm", "trainer=gpu", "trainer.devices=[0,1]"])
    assert OmegaConf.select(two, "hydra.launcher.gpus_per_node") == 2
    parallel = compose_hydra(["hydra/launcher=parallel"])
    assert parallel.hydra.launcher._target_.endswith("JoblibLauncher")
    for search, parameter in (("gamma_optuna", "smoothing.gamma"), ("epsilon_optuna", "smoothing.epsilon")):
        cfg = compose_hydra([f"hparams_search={search}"])
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc_best"
        assert parameter in cfg.hydra.sweeper.params and parameter.split(".")[1] in cfg.smoothing
    strategies = compose_hydra(["sweep=strategies"]).hydra
    assert str(strategies.mode).endswith("MULTIRUN") and strategies.sweeper.params.smoothing == "none,uniform,gamma"
    grid = compose_hydra(["sweep=gamma_grid", "experiment=mezzini2019"])
    assert grid.hydra.sweeper.params["smoothing.gamma"].split(",") == [f"0.{i}" for i in range(2, 10)] + ["1.0"]
    assert grid.hydra.sweeper.params.seed == "0,1,2" and grid.trainer.max_epochs == 200  # composes with the recipe
    assert compose_hydra([]).resume_sweep is False


def _write_metrics(directory: Path, **fields) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps({"status": "completed", "val/acc_best": 0.5, **fields}))
    return directory


def test_resume_sweep_skips_only_the_same_job(tmp_path: Path) -> None:
    overrides = ["smoothing=gamma", "smoothing.gamma=0.8", "seed=1", "dataset=digits"]
    cfg = compose_hydra(overrides)
    choices = {"dataset": "digits", "model": "resnet_v1", "smoothing": "gamma", "augment": "none"}
    recorded = {"seed": 1, "smoothing.gamma": 0.8, **choices}
    job = _write_metrics(tmp_path / "same", overrides=job_overrides(overrides), **recorded)
    assert completed_job(cfg, job, [*reversed(overrides), "resume_sweep=true"], choices)["val/acc_best"] == 0.5
    # A job of another grid in the same directory: another data set, another training length.
    other = _write_metrics(tmp_path / "other", overrides=job_overrides([*overrides[:3], "dataset=mnist"]), **recorded)
    assert completed_job(cfg, other, overrides, choices) is None
    longer = _write_metrics(tmp_path / "longer", overrides=job_overrides([*overrides, "trainer.max_epochs=9"]))
    assert completed_job(cfg, longer, overrides, choices) is None
    # Recorded before metrics.json kept the overrides: data set, model, strategy names and parameters must match.
    old = _write_metrics(tmp_path / "old", **recorded)
    assert completed_job(cfg, old, overrides, choices) is not None
    old_other = _write_metrics(tmp_path / "old_other", **{**recorded, "dataset": "mnist", "model": "mlp"})
    assert completed_job(cfg, old_other, overrides, choices) is None
    failed = _write_metrics(tmp_path / "failed", overrides=job_overrides(overrides), **{**recorded, "status": "failed"})
    assert completed_job(cfg, failed, overrides, choices) is None


def test_a_joblib_sweep_with_n_jobs_zero_is_refused_in_one_line(tmp_path: Path) -> None:
    for launcher in (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], ["hydra/launcher=parallel"]):
        args = ["-m", *launcher, "seed=0,1", *FAST, f"paths.log_dir={tmp_path}"]
        result = run_app_in_process(args, tmp_path, env={"LABELSMOOTH_SWEEP_JOBS": "0"})
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("hydra.launcher.n_jobs=0 must be a whole number other than 0: the jobs at once")
        assert not list(tmp_path.glob("multirun/*/*/0"))  # no job started


def test_resume_sweep_says_when_the_sweep_directory_holds_no_earlier_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = tmp_path / "multirun" / "day" / "time"
    callback = SayWhenNothingToResume()
    for resume_sweep, jobs, warned in ((True, [], True), (False, [], False), (True, ["0"], False)):
        for job in jobs:
            (sweep / job / ".hydra").mkdir(parents=True)
        config = OmegaConf.create({"resume_sweep": resume_sweep, "hydra": {"sweep": {"dir": str(sweep)}}})
        caplog.clear()
        callback.on_multirun_start(config)
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert bool(said) is warned, (resume_sweep, jobs, said)
        if warned:
            assert said[0].startswith(f"resume_sweep=true, but hydra.sweep.dir={sweep} holds no job of an earlier run")


@pytest.mark.parametrize("setting", ["n_trials=0", "n_jobs=-1"])
def test_an_optuna_search_that_would_run_no_trial_is_refused_in_one_line(tmp_path: Path, setting: str) -> None:
    """The plugin ran no trial and then reported every trial failed."""
    sweep = tmp_path / "optuna"
    args = ["hparams_search=gamma_optuna", f"hydra.sweeper.{setting}", *FAST, f"hydra.sweep.dir={sweep}"]
    result = run_app_in_process(args, tmp_path, env={"HYDRA_FULL_ERROR": ""})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0] == f"hydra.sweeper.{setting} must be an integer >= 1"
    assert not list(sweep.glob("*/metrics.json"))


def test_an_optuna_search_in_which_every_trial_fails_ends_in_one_message(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    result = run_app_in_process(
        [
            "hparams_search=epsilon_optuna",
            "hydra.sweeper.params={smoothing.epsilon:'choice(1.5,2.0)'}",  # ε must lie in [0, 1)
            "hydra.sweeper.n_trials=2",
            *FAST,
            f"hydra.sweep.dir={sweep}",
        ],  # fmt: skip
        tmp_path,
        env={"HYDRA_FULL_ERROR": ""},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "No trials are completed yet" not in result.stderr
    assert f"No trial of the Optuna search completed: every trial failed (their errors are above, and in {sweep}" in (
        result.stderr
    )
    assert {m["status"] for m in metrics_of(sweep).values()} == {"failed"}
    assert not (sweep / "optimization_results.yaml").exists()


def test_an_optimized_metric_the_run_does_not_record_is_named_with_the_closest(caplog) -> None:
    from labelsmooth.runs.sweeps import optimized_value

    metrics = {"status": "completed", "val/acc": 0.9, "val/acc_best": 0.95, "val/nll": 0.3, "smoothing": "gamma"}
    assert optimized_value(metrics, "val/acc_best") == 0.95 and not caplog.records
    with caplog.at_level("WARNING"):
        assert optimized_value(metrics, "val/accc") is None
    assert caplog.messages == [
        "optimized_metric=val/accc: the run records no such number (the closest: val/acc, val/acc_best), so a "
        "sweeper gets none"
    ]


def test_resuming_a_sweep_whose_grid_changed_is_refused_before_any_job(tmp_path: Path, capsys) -> None:
    """Jobs find their directories by number: a value inserted into the grid would give a completed job's
    directory to another job and run that completed job again under a new number."""
    from omegaconf import OmegaConf

    from labelsmooth.cli.hydra_callbacks import refuse_a_changed_grid

    def multirun(*task: str) -> dict:
        sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None}
        return {"hydra": {"sweeper": sweeper, "overrides": {"task": list(task)}}, "resume_sweep": True}

    (tmp_path / "multirun.yaml").write_text(OmegaConf.to_yaml(multirun("smoothing=none,gamma", "seed=0,1")))
    refuse_a_changed_grid(OmegaConf.create(multirun("smoothing=none,gamma,uniform", "seed=0,1")), tmp_path)  # added
    with pytest.raises(SystemExit) as refused:
        refuse_a_changed_grid(OmegaConf.create(multirun("smoothing=none,gamma", "seed=0,1,2")), tmp_path)
    assert refused.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"resume_sweep=true: the grid differs from the one in {tmp_path}/multirun.yaml: job 2 was smoothing=gamma "
        "seed=0, it would now be smoothing=none seed=2. Continue it with its own grid (jobs may be added at its end), "
        "or start the changed grid in a new hydra.sweep.dir"
    )
