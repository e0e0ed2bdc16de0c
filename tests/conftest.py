"""Shared fixtures: composed configs (as ``python train.py`` would build them) and a runner for them."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import json
import logging
import os
import runpy
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

# Under pytest-xdist (make test) one torch thread per worker, set before torch is imported and inherited by the
# tests' subprocesses: the workers share the cores, and two threads per worker made the tiny models' steps wait
# for each other (a fused ResNet test took 71 s instead of 9 s).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from labelsmooth.conf import CONFIG_DIR

from labelsmooth.cli.build import compose_config, in_run_directory
from labelsmooth.cli.train import train
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.overrides import override_value

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def _keep_each_config_file_parsed() -> None:
    """Hydra reads and parses every YAML file of the config tree again for each composition, about a third of
    one, and the suite composes thousands. Each test process keeps a file's parse (keyed by its real path,
    modification time and size, so a file a test writes or changes is read again) and Hydra's own configs', and
    hands Hydra a copy of it; the rest of the composition is Hydra's, unchanged. Hydra's plugin scan executes its
    core plugins' modules again, which makes new classes of them, so the scan comes first (once per process)."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource

    parsed: dict[tuple, Any] = {}

    def kept(load: Callable, key_of: Callable) -> Callable:
        def load_config(source: Any, config_path: str) -> Any:
            key = key_of(source, config_path)
            if key is None:
                return load(source, config_path)
            if key not in parsed:
                parsed[key] = load(source, config_path)
            result = parsed[key]
            return dataclasses.replace(result, config=copy.deepcopy(result.config), header=dict(result.header))

        return load_config

    def file_key(source: FileConfigSource, config_path: str) -> tuple | None:
        path = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
        with contextlib.suppress(OSError):
            stat = os.stat(path)
            return (path, stat.st_mtime_ns, stat.st_size)
        return None  # Hydra's own error

    def hydras_own(source: ImportlibResourcesConfigSource, config_path: str) -> tuple | None:
        return (source.path, config_path) if source.path.split(".")[0] == "hydra" else None

    FileConfigSource.load_config = kept(FileConfigSource.load_config, file_key)  # type: ignore[method-assign]
    ImportlibResourcesConfigSource.load_config = kept(  # type: ignore[method-assign]
        ImportlibResourcesConfigSource.load_config, hydras_own
    )


_keep_each_config_file_parsed()


def composed_by_hydra(override: Override) -> bool:
    """Whether Hydra reads ``override`` while it builds the defaults list (``group=option``, ``+group=option``,
    ``~group``, ``group@package=option``) or it is one of Hydra's own settings (``hydra.searchpath`` changes where
    the groups are found). Every other override is a value that Hydra sets on the composed config afterwards, in
    command-line order (``ConfigLoaderImpl._apply_overrides_to_config``)."""
    key = override.key_or_group
    return key.startswith("hydra") or "/" in key or (CONFIG_DIR / key).is_dir()


@functools.cache
def _composed_groups(group_overrides: tuple[str, ...], working_dir: str) -> DictConfig:
    return compose_config(list(group_overrides))


@functools.cache
def _composed(overrides: tuple[str, ...], working_dir: str) -> DictConfig:
    """``compose_config(overrides)`` as Hydra composes it, in two steps: the config of the overrides that Hydra
    reads while it builds the defaults list, composed once per process for all the tests that choose the same
    options (building the defaults list, which loads every YAML file, is most of a composition), then the other
    overrides set on a copy by Hydra's own function, as Hydra sets them. Where Hydra would refuse them, Hydra's
    own composition gives its error. ``LABELSMOOTH_TEST_COMPOSE_CHECK=1`` composes each one in one step too and
    fails where the two differ."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = tuple(o.input_line for o in parsed if composed_by_hydra(o))
    cfg = copy.deepcopy(_composed_groups(groups, working_dir))
    try:
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if not composed_by_hydra(o)], cfg)
    except Exception:
        return compose_config(list(overrides))
    if os.environ.get("LABELSMOOTH_TEST_COMPOSE_CHECK") == "1":
        whole = compose_config(list(overrides))
        assert OmegaConf.to_yaml(cfg) == OmegaConf.to_yaml(whole), f"composed in two steps differently: {overrides}"
        assert OmegaConf.is_struct(cfg) == OmegaConf.is_struct(whole), overrides
    return cfg


def compose_train_config(overrides: list[str] | None = None, output_dir: str | Path | None = None) -> DictConfig:
    """``compose_config`` (the config ``python train.py <overrides>`` runs), memoized in this test process
    (``_composed``): the suite composes hundreds of override lists, at 0.1 to 0.3 s each. A deep copy, which the
    test may change; the working directory is part of the key (a ``hydra.searchpath`` may be relative)."""
    cfg = copy.deepcopy(_composed(tuple(overrides or ()), os.getcwd()))
    return cfg if output_dir is None else in_run_directory(cfg, output_dir)


def choices_of(overrides: list[str]) -> dict[str, str]:
    defaults = {"dataset": "digits", "model": "resnet_v1", "smoothing": "uniform"}
    given = {key: override_value(overrides, key) for key in defaults}
    return {key: value if given[key] is None else given[key] for key, value in defaults.items()}


# figures=false: a test that reads a figure asks for them (figures=true); drawing them takes about 1 s per run.
FAST = ["debug=fast", "logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
FAST += ["figures=false"]


def run_training(tmp_path: Path, overrides: list[str]) -> dict:
    """Train in this process (a few batches unless overridden) and return the run's summary."""
    cfg = compose_train_config([*FAST, *overrides], output_dir=tmp_path)
    return train(cfg, RunContext(output_dir=tmp_path, choices=choices_of(overrides)))


def run_training_with_hydra_config(run_dir: Path, overrides: list[str]) -> dict:
    """``run_training``, and the run's ``.hydra/config.yaml`` next to it, as Hydra writes it for every run (which
    ``eval.py`` and checkpoints' loaders may read)."""
    summary = run_training(run_dir, overrides)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(compose_train_config([*FAST, *overrides], output_dir=run_dir), run_dir / ".hydra" / "config.yaml")
    return summary


def metrics_of(sweep: Path) -> dict[int, dict]:
    """The ``metrics.json`` of each job of a sweep directory, by job number."""
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment of a fresh ``python train.py``: offline W&B, and not attached to the W&B service that
    in-process tests started in this pytest process (``WANDB_SERVICE``), which would outlive a killed run."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **overrides}


def run_cli(
    args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None, script: str = "train.py"
) -> subprocess.CompletedProcess:
    """``python <script> <args>`` (``train.py``, ``eval.py``) as a user would run it; an empty value in ``env``
    removes that variable (e.g. ``WANDB_MODE=""``)."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=cwd,
        env=cli_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_environment(env: dict | None) -> dict[str, str]:
    """``subprocess_env`` with ``HYDRA_FULL_ERROR=1`` and ``env``, whose empty values remove their variables."""
    return {k: v for k, v in subprocess_env(**{"HYDRA_FULL_ERROR": "1", **(env or {})}).items() if v}


def run_app_in_process(
    args: list[str], cwd: Path, env: dict | None = None, script: str = "train.py"
) -> subprocess.CompletedProcess:
    """``run_cli`` in this process: the repository's ``train.py``, ``eval.py`` or ``report.py`` run as
    ``__main__`` (``runpy``), so the same entry point, error policy and exit code, with stdout and stderr
    captured; the process's argv, working directory, environment and logging are restored afterwards. A fresh
    interpreter costs about 5 s of imports: tests use a real process only for what needs one (DDP, a killed or
    SLURM job, the console scripts, the exit-code contract in ``test_cli.py``)."""
    full_env = cli_environment(env)
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level, logging.raiseExceptions)
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(full_env)
    sys.argv = [script, *args]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
                code = 0
            except SystemExit as stop:  # what the interpreter does with it: a message goes to stderr
                code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
            except Exception:  # HYDRA_FULL_ERROR: the exception leaves main()
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers[:]:
            if handler not in saved_logging[0]:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])
        logging.raiseExceptions = saved_logging[2]
    return subprocess.CompletedProcess([script, *args], code, stdout.getvalue(), stderr.getvalue())


def run_app(
    args: list[str], cwd: Path, env: dict | None = None, script: str = "train.py"
) -> subprocess.CompletedProcess:
    """``python <script> <args>``: in this process (``run_app_in_process``), or in a real one under DDP
    (``trainer=ddp``: Lightning starts the other ranks from the command line)."""
    runner = run_cli if "trainer=ddp" in args else run_app_in_process
    return runner(args, cwd, env=env, script=script)


@contextlib.contextmanager
def lock_held_by_another_process(lock_file: Path) -> Iterator[None]:
    """``lock_file`` held (``flock``) by a plain process of its own while the body runs, as a training process
    holds its run directory's ``.lock``."""
    code = "import fcntl, os, sys, time\nfcntl.flock(os.open(sys.argv[1], os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX)\n"
    code += "print('held', flush=True)\ntime.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first in each worker's share: under pytest-xdist the workers then end on short tests, not
    one waiting for another's 30-second test. ``--dist worksteal`` hands the workers consecutive shares of the
    collection (the first a third of it, the second half of the rest, ...), so the slow tests are dealt out in
    turn to the front of each share; in one process they simply come first."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    ordered, start = [], 0
    for worker in range(workers):
        size = (len(items) - len(ordered)) // (workers - worker)
        dealt = slow[worker::workers]
        taken = max(size - len(dealt), 0)  # a share may hold more slow tests than its size (a -m slow run)
        ordered += dealt + fast[start : start + taken]
        start += taken
    items[:] = ordered + fast[start:]


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    directory: Path
    summary: dict  # what ``train`` returned


# The shared run: γ smoothing (the paper's strategy) and its figures, for the tests that read predictions or figures.
SHARED_RUN = ["smoothing=gamma", "smoothing.gamma=0.8", "figures=true"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One run (``SHARED_RUN``, a few batches), trained once per test process and shared by the tests that only
    read a run: its directory as Hydra leaves it (``.hydra/config.yaml`` next to ``checkpoints/``, ``metrics.json``,
    predictions, figures). Read-only: a test that changes a run trains its own."""
    run_dir = tmp_path_factory.mktemp("trained_run")
    return TrainedRun(run_dir, run_training_with_hydra_config(run_dir, SHARED_RUN))


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def no_wandb_run_left_open():
    """A test that leaves a W&B run open fails: the next in-process ``wandb.init`` of the session would return
    that run instead of starting its own (W&B's default ``reinit``), and log to the wrong directory."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        left = wandb.run
        left.finish()
        pytest.fail(f"this test left the W&B run {left.id} open ({left.dir})")
