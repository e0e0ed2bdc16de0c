"""The package as a library and as a tool: what each layer may import, and the installed console scripts."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT, subprocess_env

PACKAGE = REPO_ROOT / "src" / "labelsmooth"
TRAINING_STACK = ("pytorch_lightning", "lightning", "hydra", "omegaconf", "wandb", "timm", "torchvision")

# layer -> the project packages it must not import (the design's one-way dependency rules)
FORBIDDEN = {
    "smoothing": ("cli", "module", "fused", "callbacks", "data", "models", "runs", "tracking", "report", "calibration"),
    "models": ("cli", "module", "fused", "callbacks", "data", "smoothing", "runs", "tracking", "report"),
    "data": ("cli", "module", "fused", "callbacks", "models", "smoothing", "runs", "tracking", "report"),
    "calibration": ("cli", "module", "fused", "callbacks", "data", "models", "smoothing", "runs", "tracking", "report"),
    "runs": ("cli", "module", "fused", "callbacks", "data", "models", "smoothing", "report"),
    "tracking": ("cli", "module", "fused", "callbacks", "data", "models", "smoothing", "report"),
    "report": ("cli", "module", "fused", "callbacks", "data", "models", "smoothing"),
    "fused": ("cli", "callbacks", "tracking", "report"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` in ``path`` names (at any depth: lazy imports count)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_the_dependency_rules_allow(layer: str) -> None:
    offending = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "labelsmooth" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                offending.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offending, offending


def test_smoothing_depends_on_torch_alone() -> None:
    third_party = set()
    for path in (PACKAGE / "smoothing").rglob("*.py"):
        third_party |= {m.split(".")[0] for m in imported_modules(path)}
    assert third_party - set(sys.stdlib_module_names) - {"labelsmooth", "torch", "__future__"} == set()


def test_each_library_layer_imports_only_what_it_needs() -> None:
    """One fresh interpreter, each import widening what may be loaded: the calibration parts that the report uses
    load no torch; ``pip install labelsmooth`` (no extra) is enough for ``labelsmooth.smoothing`` and
    ``labelsmooth.calibration`` in a plain PyTorch loop: the strategies load none of Lightning, Hydra, OmegaConf,
    YAML, W&B, timm or torchvision, and the metrics none of them but torchvision (torchmetrics, which they use,
    imports torchvision itself when it is installed); computing them (the smooth ECE among them) loads no
    relplot, pandas or seaborn."""
    code = (
        "import sys\n"
        "import labelsmooth.calibration.bins_csv, labelsmooth.calibration.selective\n"
        "import labelsmooth.calibration.reliability\n"
        "from labelsmooth.calibration import read_bins_csv, aurc, augrc, risk_coverage_curve\n"
        "print('torch' in sys.modules)\n"
        "from labelsmooth.calibration import fit_temperature\n"  # torch, when a part that needs it is asked for
        "print('torch' in sys.modules)\n"
        "import torch\n"
        "import labelsmooth.smoothing as s\n"
        "loss = s.GammaSmoothing(num_classes=10, gamma=0.8)(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))\n"
        f"print(sorted(m for m in {(*TRAINING_STACK, 'yaml')!r} if m in sys.modules), float(loss) > 0)\n"
        "import labelsmooth.calibration.metrics\n"
        f"print(sorted(m for m in {TRAINING_STACK[:-1]!r} if m in sys.modules))\n"
        "values = labelsmooth.calibration.metrics.ClassificationMetrics(num_classes=10)\n"
        "values.update(torch.randn(50, 10), torch.randint(0, 10, (50,)))\n"
        "print(len(values.compute()) > 0, sorted(m for m in ('relplot', 'pandas', 'seaborn') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:5] == ["False", "True", "[] True", "[]", "True []"]


def test_the_lazy_exports_of_calibration_are_the_names_type_checkers_see() -> None:
    """``labelsmooth.calibration`` imports its names on first use (``_EXPORTS``: name -> module); its
    ``TYPE_CHECKING`` block imports the same names from the same modules, so mypy types them (they were ``Any``
    through the module's ``__getattr__``) and re-exports them (``import x as x``) under ``--strict``."""
    import labelsmooth.calibration as calibration

    typed = {}
    for node in ast.walk(ast.parse((PACKAGE / "calibration" / "__init__.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labelsmooth.calibration."):
            for alias in node.names:
                assert alias.asname == alias.name, alias.name
                typed[alias.name] = node.module.rsplit(".", 1)[1]
    assert typed == calibration._EXPORTS


def test_no_source_file_is_long_and_the_top_level_stays_small() -> None:
    lengths = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 450} == {}
    assert len([p for p in PACKAGE.glob("*.py")]) <= 8


def test_the_wheel_lists_every_package_and_ships_the_configs() -> None:
    """``pyproject.toml`` lists the packages (the code under ``src/``, the configs of ``conf/`` as
    ``labelsmooth.conf``): a package added under ``src/`` and not listed would be missing from the wheel, and the
    namespace ``hydra_plugins`` not listed would hide our sweeper from Hydra in an editable install."""
    tomllib = pytest.importorskip("tomllib")
    setuptools_cfg = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    src = REPO_ROOT / "src"
    in_src = set()  # every folder of src/ with a module in it or below it
    for module in src.rglob("*.py"):
        parts = module.relative_to(src).parent.parts
        in_src |= {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    assert set(setuptools_cfg["packages"]) == in_src | {"labelsmooth.conf"}
    assert setuptools_cfg["package-dir"]["labelsmooth.conf"] == "conf"
    assert (REPO_ROOT / "conf" / "train.yaml").is_file() and (REPO_ROOT / "conf" / "eval.yaml").is_file()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The package built as a wheel and installed (not editable) under a fresh prefix; its dependencies are this
    environment's."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), str(source)], check=True)
    wheel = next(root.glob("labelsmooth-*.whl"))
    prefix = root / "prefix"
    # --ignore-installed: without it pip would uninstall the editable install of this environment
    subprocess.run(
        [*pip, "install", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(wheel)], check=True
    )
    site = next(prefix.glob("lib/python*/site-packages"))
    env = subprocess_env(PYTHONPATH=str(site), HYDRA_FULL_ERROR="1")
    return prefix / "bin", env


@pytest.mark.slow
def test_the_installed_console_scripts_work_from_any_directory(installed, tmp_path: Path) -> None:
    """The wheel is licensed (Apache-2.0 in its metadata, the licence file inside) and typed (``py.typed``). Its
    ``labelsmooth-train`` trains from a directory outside the repository, and ``labelsmooth-eval`` of its best
    checkpoint, after the run directory was moved, gives the run's own test accuracy."""
    bin_dir, env = installed
    site = Path(env["PYTHONPATH"])
    assert (site / "labelsmooth" / "py.typed").is_file()
    dist_info = next(site.glob("labelsmooth-*.dist-info"))
    assert "License-Expression: Apache-2.0" in (dist_info / "METADATA").read_text(encoding="utf-8")
    assert any(path.name == "LICENSE" for path in dist_info.rglob("*"))

    def run(*command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    run(str(bin_dir / "labelsmooth-report"), "--help")  # the other two run for real below
    quiet = ["logger=none", "trainer.enable_progress_bar=false", "figures=false"]
    run(str(bin_dir / "labelsmooth-train"), "trainer.max_epochs=1", *quiet)
    (metrics_file,) = tmp_path.glob("outputs/runs/*/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "completed"
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(metrics_file.parent, moved)
    (best,) = (moved / "checkpoints").glob("best-*.ckpt")
    run(str(bin_dir / "labelsmooth-eval"), f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}", *quiet)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]
    # The installed copy ran, not the repository's: it read the configs that the wheel carries.
    hydra_runtime = OmegaConf.load(moved / ".hydra" / "hydra.yaml").hydra.runtime
    (main_configs,) = [source.path for source in hydra_runtime.config_sources if source.provider == "main"]
    assert Path(main_configs).is_relative_to(bin_dir.parent) and (Path(main_configs) / "train.yaml").is_file()


def test_a_console_script_without_its_extra_says_which_to_install(monkeypatch) -> None:
    import labelsmooth.scripts as scripts

    monkeypatch.setitem(scripts.APPS, "labelsmooth-train", ("labelsmooth.cli.train:main", "train", ("no_such_mod",)))
    with pytest.raises(SystemExit) as stopped:
        scripts.train()
    assert str(stopped.value) == (
        "labelsmooth-train needs the 'train' extra (not installed: no_such_mod): pip install 'labelsmooth[train]'"
    )
