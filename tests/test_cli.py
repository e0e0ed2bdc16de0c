"""``python train.py`` as users run it: Hydra multirun, DDP over gloo, and the output layout."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import yaml

from labelsmooth.cli.build import CONFIG_DIR
from tests.conftest import run_app_in_process, run_cli
from tests.wandb_records import offline_run_of

FAST = ["debug=fast", "trainer.enable_progress_bar=false", "figures=false"]


def job_dirs(log_dir: Path) -> list[Path]:
    return sorted(p.parent for p in (log_dir / "multirun").glob("*/*/*/metrics.json"))


def test_multirun_runs_every_job_with_its_own_outputs_and_wandb_run(tmp_path: Path) -> None:
    result = run_app_in_process(
        ["-m", "smoothing=gamma", "smoothing.gamma=0.6,0.8", *FAST, f"paths.log_dir={tmp_path}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path)
    assert [p.name for p in jobs] == ["0", "1"]
    gammas = []
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        gammas.append(metrics["smoothing.gamma"])
        assert (job / ".hydra" / "config.yaml").is_file()
        page = offline_run_of(job)  # the job's own W&B run, in the sweep's group
        assert page.exit_code == 0 and page.group == "sweep-" + "-".join(job.parent.parts[-2:])
        assert page.config["smoothing"]["gamma"] == metrics["smoothing.gamma"]
    assert gammas == [0.6, 0.8]
    output = result.stdout + result.stderr  # each job's headline, no table of its metrics (metrics.json has them)
    assert output.count("test accuracy: ") == 2 and "val/acc_best" not in output
    sweep = jobs[0].parent
    assert f"Sweep done: 2 jobs (2 completed) in {sweep}. Compare them: python report.py {sweep}" in output


def test_the_issue_command_single_value_multirun(tmp_path: Path) -> None:
    args = ["smoothing=gamma", "smoothing.gamma=0.8", *FAST, "logger=none", "-m"]
    result = run_app_in_process(args, tmp_path, env={"LABELSMOOTH_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = job_dirs(tmp_path / "outputs")
    assert json.loads((job / "metrics.json").read_text())["smoothing.gamma"] == 0.8


def test_single_run_goes_to_outputs_runs_date_time(tmp_path: Path) -> None:
    result = run_app_in_process([*FAST, "logger=none"], tmp_path, env={"LABELSMOOTH_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = (tmp_path / "outputs" / "runs").glob("*/*/metrics.json")
    assert json.loads(metrics.read_text())["status"] == "completed"
    assert "test accuracy" in result.stdout


@pytest.mark.parametrize(
    "mode", ["run", "multirun", "hydra.mode=MULTIRUN", "sweep=strategies", "+sweep@_global_=strategies"]
)
def test_hydra_composes_a_launch_once_and_records_its_mode(mode: str, tmp_path: Path, monkeypatch) -> None:
    """Hydra composed every launch twice, the first time only to read ``hydra.mode``: now once, with the mode and
    overrides it recorded before. Where an override or a chosen preset sets the mode, Hydra reads it as before."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    reading_the_mode: list[list[str]] = []  # Hydra's get_mode composes without checking the sweep's overrides
    compose = ConfigLoaderImpl.load_configuration

    def counted(loader, config_name, overrides, run_mode, from_shell=True, validate_sweep_overrides=True):
        if not validate_sweep_overrides:
            reading_the_mode.append(list(overrides))
        return compose(loader, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    args = {"run": [], "multirun": ["-m"]}.get(mode, [mode])
    sweep = ["smoothing=none", "seed=0"] if "sweep" in mode else []  # the preset's jobs, narrowed to one
    common = ["model=mlp", "logger=none", "figures=false", "trainer.max_epochs=1"]
    result = run_app_in_process([*args, *common, *sweep, f"paths.log_dir={tmp_path}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (hydra_yaml,) = (
        tmp_path.glob("*/*/*/*/.hydra/hydra.yaml") if mode != "run" else tmp_path.glob("*/*/*/.hydra/hydra.yaml")
    )
    recorded = yaml.safe_load(hydra_yaml.read_text())["hydra"]
    expected = "RUN" if mode == "run" else "MULTIRUN"
    assert recorded["mode"] == expected
    set_by_hydra = mode in ("run", "multirun")  # Hydra adds hydra.mode=<mode> where nothing set it
    assert (f"hydra.mode={expected}" in recorded["overrides"]["hydra"]) == (
        set_by_hydra or mode == "hydra.mode=MULTIRUN"
    )
    assert len(reading_the_mode) == (0 if set_by_hydra else 1), reading_the_mode


def test_the_mode_is_left_to_hydra_where_a_file_may_set_it(tmp_path: Path) -> None:
    from labelsmooth.cli.hydra_mode import groups_setting_the_mode, mode_is_unset

    assert groups_setting_the_mode(CONFIG_DIR) == {"sweep", "hparams_search"}  # not callbacks' checkpoint mode
    assert mode_is_unset(["-m", "seed=0,1", "experiment=mezzini2019", "debug=fast"], CONFIG_DIR)
    chosen = (["sweep=strategies"], ["+hparams_search=gamma_optuna"], ["+sweep@_global_=strategies"], ["sweep/x=y"])
    set_here = (["hydra.mode=RUN"], ["++hydra.mode@hydra=RUN"], ["++hydra={mode:RUN}"], ["--config-dir", "x"])
    for argv in (*chosen, *set_here):
        assert not mode_is_unset(argv, CONFIG_DIR), argv

    def groups(files: dict[str, str]) -> frozenset[str] | None:
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        groups_setting_the_mode.cache_clear()
        found = groups_setting_the_mode(tmp_path)
        for name in files:
            (tmp_path / name).unlink()
        return found

    primary = {"train.yaml": "defaults:\n  - _self_\n  - sweep: null\nseed: 0\n"}
    grid = {"sweep/grid.yaml": "# @package _global_\nhydra:\n  mode: MULTIRUN\n"}
    assert groups({**primary, **grid}) == {"sweep"}
    # an option in a subfolder, a quoted key, a file in the hydra package: its top-level group
    assert groups({**primary, "experiment/grid/seeds.yaml": "# @package _global_\nhydra: {mode: MULTIRUN}\n"}) == {
        "experiment"
    }
    assert groups({**primary, "experiment/quoted.yaml": 'hydra:\n  "mode": MULTIRUN\n'}) == {"experiment"}
    assert groups({**primary, "experiment/pkg.yaml": "# @package hydra\nmode: MULTIRUN\n"}) == {"experiment"}
    assert groups({**primary, "callbacks/default.yaml": "checkpoint:\n  mode: max\n"}) == set()
    for hydra_node in ('"mo\\x64e": MULTIRUN', "job: {name: &k mode}\n  *k : MULTIRUN", "mode: ${oc.env:X}"):
        assert groups({**primary, "experiment/e.yaml": f"hydra:\n  {hydra_node}\n"}) == {"experiment"}, hydra_node
    assert groups({**primary, "experiment/e.yaml": "hydra: ${oc.env:X}\n"}) == {"experiment"}
    assert groups({**primary, "experiment/e.yaml": "hydra.mode: MULTIRUN\n"}) == {"experiment"}
    elsewhere = tmp_path.parent / f"{tmp_path.name}-linked"  # a folder linked into the config dir, as Hydra reads it
    (elsewhere / "seeds").mkdir(parents=True)
    (elsewhere / "seeds" / "x.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    (tmp_path / "grid").symlink_to(elsewhere)
    assert groups(primary) == {"grid"}
    (tmp_path / "grid").unlink()
    assert groups({"train.yaml": "hydra:\n  searchpath: [file:///elsewhere]\n"}) is None  # files not read here
    # a defaults list that chooses an option of such a group, in either form, or a primary config that sets it
    escaped = '  - "/\\x73weep/grid"\n'  # /sweep/grid, as YAML reads it
    for chooses in ("  - override /sweep: grid\n", "  - /sweep/grid\n", "  - sweep@_global_: grid\n", escaped):
        preset = {"experiment/x.yaml": "# @package _global_\ndefaults:\n" + chooses}
        assert groups({**primary, **grid, **preset}) is None, chooses
    assert groups({"train.yaml": "hydra:\n  mode: MULTIRUN\n"}) is None
    assert groups({"train.yaml": "mode: MULTIRUN\n"}) is None
    groups_setting_the_mode.cache_clear()


def test_the_mode_is_left_to_hydra_where_a_search_path_plugin_adds_configs(monkeypatch) -> None:
    from hydra._internal import utils
    from hydra.core.config_search_path import ConfigSearchPath
    from hydra.core.config_store import ConfigStore

    from labelsmooth.cli.hydra_mode import configs_elsewhere, mode_is_unset

    assert not configs_elsewhere(CONFIG_DIR)
    original = utils.create_config_search_path

    def with_a_plugins_path(path: str | None) -> ConfigSearchPath:
        search_path = original(path)
        search_path.append("some-plugin", "pkg://some_plugin.conf")
        return search_path

    monkeypatch.setattr(utils, "create_config_search_path", with_a_plugins_path)
    configs_elsewhere.cache_clear()
    try:
        assert not mode_is_unset(["seed=1"], CONFIG_DIR)
    finally:
        configs_elsewhere.cache_clear()
    monkeypatch.undo()
    store = ConfigStore.instance()  # a plugin's structured config in a group of its own
    store.store(group="audit_grid", name="seeds", node={"hydra": {"mode": "MULTIRUN"}}, package="_global_")
    try:
        assert not mode_is_unset(["seed=1"], CONFIG_DIR)
    finally:
        del store.repo["audit_grid"]
        configs_elsewhere.cache_clear()
    assert mode_is_unset(["seed=1"], CONFIG_DIR)


def test_runs_evaluations_and_sweeps_started_in_the_same_second_get_directories_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python train.py seed=1 & python train.py seed=2`` started in one second shared <date>/<time>/: the second
    run wrote over the first's checkpoints and metrics.json. So did evaluations and sweeps (job 0 of each). Hydra's
    clock is stopped here at one instant."""
    import hydra.core.utils

    instant = datetime.datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(hydra.core.utils, "datetime", type("Stopped", (), {"now": staticmethod(lambda: instant)}))
    common = [*FAST, "logger=none", "figures=false", f"paths.log_dir={tmp_path}"]
    for seed in (1, 2):
        result = run_app_in_process([*common, f"seed={seed}"], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "runs" / "2026-01-02"
    assert sorted(p.name for p in runs.iterdir()) == ["03-04-05", "03-04-05_2"]
    seeds = [json.loads((runs / name / "metrics.json").read_text())["seed"] for name in ("03-04-05", "03-04-05_2")]
    assert seeds == [1, 2]
    # resume=true that finds no run to continue stops, in a directory of its own (it wrote its .hydra/ files into
    # the first run's, and there found that run's checkpoint as its own)
    result = run_app_in_process([*common, "seed=5", "resume=true"], tmp_path)
    assert result.returncode == 1 and "resume" in result.stderr, result.stderr[-3000:]
    assert (runs / "03-04-05_3").is_dir() and "seed=1" in (runs / "03-04-05" / ".hydra" / "overrides.yaml").read_text()
    checkpoint = f"ckpt_path={runs / '03-04-05' / 'checkpoints' / 'last.ckpt'}"
    for _ in range(2):
        result = run_app_in_process([checkpoint, f"paths.log_dir={tmp_path}"], tmp_path, script="eval.py")
        assert result.returncode == 0, result.stderr[-3000:]
    evaluations = tmp_path / "eval" / "2026-01-02"
    assert sorted(p.parent.name for p in evaluations.glob("*/metrics.json")) == ["03-04-05", "03-04-05_2"]
    for seed in (3, 4):
        result = run_app_in_process(["-m", *common, f"seed={seed}"], tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    sweeps = tmp_path / "multirun" / "2026-01-02"
    seeds = [
        json.loads((sweeps / name / "0" / "metrics.json").read_text())["seed"] for name in ("03-04-05", "03-04-05_2")
    ]
    assert seeds == [3, 4]


def test_multirun_ddp_is_refused_up_front(tmp_path: Path) -> None:
    args = ["-m", "trainer=ddp", "trainer.accelerator=cpu", *FAST, f"paths.log_dir={tmp_path}"]
    result = run_app_in_process(args, tmp_path)
    assert result.returncode != 0
    assert "hydra/launcher=joblib" in result.stderr


def test_help_lists_the_config_groups_and_the_sweep_launchers(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    smoothing = next(line for line in lines if line.startswith("smoothing: "))
    strategies = sorted(p.stem for p in (CONFIG_DIR / "smoothing").glob("*.yaml"))
    assert smoothing == "smoothing: " + ", ".join(strategies)
    launchers = next(line for line in lines if line.startswith("hydra/launcher: "))
    for name in ("joblib", "parallel", "slurm", "submitit_slurm", "fused"):
        assert name in launchers
    assert "num_threads: null" in result.stdout  # and the composed config


def test_a_users_error_exits_1_with_one_line_in_a_real_process(tmp_path: Path) -> None:
    """The exit-code contract of a real interpreter; the other error tests run the same ``main()`` in-process
    (``run_app_in_process``)."""
    args = ["smoothing=gamma", "smoothing.gamma=0.05", "logger=none", *FAST, f"paths.log_dir={tmp_path}"]
    result = run_cli(args, cwd=tmp_path, env={"HYDRA_FULL_ERROR": ""})
    assert result.returncode == 1
    lines = result.stderr.splitlines()  # without Hydra's frame: "Error executing job ...", a traceback hint
    assert len(lines) == 1 and lines[0].startswith("ConfigurationError: ") and "1/K=0.1" in lines[0], result.stderr
