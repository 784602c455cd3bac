"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual environment.

Offline: the wheel is built without build isolation (this environment's setuptools) and installed with ``--no-index
--no-deps``; the new environment sees this one's site-packages (torch, Lightning, ...) through a ``.pth`` file
written after the install, behind its own, so ``lightning_skd`` is imported from the wheel. The commands run from an
empty working directory without ``PYTHONPATH``: nothing of the clone can be found.
"""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lightning_skd.commands import COMMANDS
from lightning_skd.tools.configs import shipped_configs

REPO = Path(__file__).parents[1]
# What setuptools reads to build the package; lightning_skd/configs is a link to ../configs.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.py", "setup.cfg", "lightning_skd", "configs"]
TIMEOUT_S = 600  # generous: a busy 2-core machine; the whole test takes ~30 s on an idle one


def run(args: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def copy_sources(destination: Path) -> Path:
    destination.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, destination / name, symlinks=True, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel of this tree installed; its folder."""
    root = tmp_path_factory.mktemp("install")
    source = copy_sources(root / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", root / "dist", source])
    (wheel,) = (root / "dist").glob("lightning_skd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert {f"lightning_skd/configs/{name}" for name in shipped_configs()} <= names
    assert "lightning-skd = lightning_skd.commands:main" in entry_points

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    # After the install (so pip never sees this environment's lightning_skd): torch & co. from this environment.
    (Path(purelib) / "_outer_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


@pytest.fixture
def user_env(tmp_path) -> dict:
    """A working directory outside the clone (``tmp_path``) and an environment without ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    return {"cwd": tmp_path, "env": {**env, "OMP_NUM_THREADS": "1"}}


def test_wheel_installs_a_working_command_with_the_shipped_configs(installed, user_env, tmp_path):
    command = installed / "bin" / "lightning-skd"
    where = run([installed / "bin" / "python", "-c", "import lightning_skd; print(lightning_skd.__file__)"], **user_env)
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(installed), package

    help_text = run([command, "--help"], **user_env).stdout
    assert all(f"  {name} " in help_text for name in COMMANDS)

    config = Path(run([command, "configs", "digits/selfkd.yaml"], **user_env).stdout.strip())
    assert config == package / "configs" / "digits" / "selfkd.yaml" and config.is_file()

    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    run([command, "fit", "--config", config, "--trainer.max_epochs=1", *quiet], **user_env)
    # The config's default_root_dir (outputs/digits/selfkd) is relative to the working directory.
    checkpoints = list((tmp_path / "outputs" / "digits" / "selfkd").rglob("*.ckpt"))
    assert [c.name.split("-")[0] for c in checkpoints] == ["epoch=0"], checkpoints  # one epoch, one checkpoint
