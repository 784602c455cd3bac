"""lightning_skd on ``pytorch_lightning`` and on ``lightning.pytorch`` (lightning_skd/_lightning.py).

The test process is on ``pytorch_lightning`` (the default). The choice is made once, at import, so everything on
``lightning.pytorch`` runs in a fresh process (tests/namespace_script.py).
"""

import json
import os
import subprocess
import sys

import pytest
import pytorch_lightning

import lightning_skd
from lightning_skd._lightning import ENV_VARIABLE, NAMESPACES, choose_namespace
from lightning_skd.callbacks import PredictionWriter, TemperatureScaling
from lightning_skd.data import DigitsDataModule
from lightning_skd.models import ImageClassifier
from tests import namespace_script
from tests.helpers.multiprocess import REPO, run_command

BOTH = {"pytorch_lightning", "lightning.pytorch"}


@pytest.mark.parametrize(
    ("environ", "imported", "installed", "expected"),
    [
        ({ENV_VARIABLE: "lightning.pytorch"}, set(), BOTH, ("lightning.pytorch", "set by LIGHTNING_SKD_NAMESPACE")),
        ({ENV_VARIABLE: "pytorch_lightning"}, {"lightning.pytorch"}, BOTH, ("pytorch_lightning", "set by ")),
        ({}, {"lightning.pytorch"}, BOTH, ("lightning.pytorch", "lightning.pytorch was imported before ")),
        ({}, {"lightning.pytorch", "pytorch_lightning"}, BOTH, ("pytorch_lightning", "the default")),
        ({}, set(), BOTH, ("pytorch_lightning", "the default")),
        ({}, set(), {"lightning.pytorch"}, ("lightning.pytorch", "the only Lightning package installed")),
    ],
)
def test_choose_namespace_applies_the_first_rule_that_holds(environ, imported, installed, expected):
    namespace, reason = choose_namespace(environ, dict.fromkeys(imported), installed.__contains__)
    assert namespace == expected[0]
    assert reason.startswith(expected[1])


def test_choose_namespace_rejects_an_unknown_value():
    message = (
        "The environment variable LIGHTNING_SKD_NAMESPACE must be one of pytorch_lightning, lightning.pytorch "
        r"\(the Lightning package lightning_skd builds on\), got 'lightning'"
    )
    with pytest.raises(ValueError, match=message):
        choose_namespace({ENV_VARIABLE: "lightning"}, {}, BOTH.__contains__)


@pytest.mark.parametrize(
    ("environ", "installed", "message"),
    [
        ({ENV_VARIABLE: "lightning.pytorch"}, {"pytorch_lightning"}, "install the 'lightning' package or unset"),
        ({}, set(), "lightning_skd needs Lightning: install 'pytorch-lightning'"),
    ],
)
def test_choose_namespace_fails_when_the_package_is_not_installed(environ, installed, message):
    with pytest.raises(ImportError, match=message):
        choose_namespace(environ, {}, installed.__contains__)


def test_first_lightning_import_fails_early_on_a_bad_environment_variable():
    # The package root loads lazily (a fast `lightning-skd --help`): the choice is made by the first name needing it.
    environment = {**os.environ, ENV_VARIABLE: "lightning", "PYTHONPATH": str(REPO)}
    code = "from lightning_skd import SelfKDCallback"
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ValueError: The environment variable LIGHTNING_SKD_NAMESPACE must be one of" in result.stderr
    assert "got 'lightning'" in result.stderr


def test_lightning_namespace_is_the_package_the_classes_subclass():
    assert lightning_skd.LIGHTNING_NAMESPACE == "pytorch_lightning"  # the test process: the default
    assert issubclass(lightning_skd.SelfKDCallback, pytorch_lightning.Callback)
    assert issubclass(lightning_skd.SKDAlphaScheduler, pytorch_lightning.Callback)
    assert issubclass(TemperatureScaling, pytorch_lightning.Callback)
    assert issubclass(PredictionWriter, pytorch_lightning.callbacks.BasePredictionWriter)
    assert issubclass(ImageClassifier, pytorch_lightning.LightningModule)
    assert issubclass(DigitsDataModule, pytorch_lightning.LightningDataModule)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_core_paths_run_on_each_namespace(namespace, tmp_path):
    """Fit with SelfKDCallback (cache, snapshot), checkpoint, exact resume; a user's own LightningCLI; lightning-skd.

    On the other package, the run also resumes a checkpoint written on this one.
    """
    if namespace == lightning_skd.LIGHTNING_NAMESPACE:
        namespace_script.run_core_paths(tmp_path)
        return
    namespace_script.fit_two_epochs("cache", tmp_path / "foreign")
    arguments = f"{str(tmp_path / 'run')!r}, {str(tmp_path / 'foreign' / 'epoch=0.ckpt')!r}"
    code = f"from tests.namespace_script import main; main({arguments})"
    result = run_command([sys.executable, "-c", code], cwd=tmp_path, env={ENV_VARIABLE: namespace})
    assert json.loads(result.stdout.splitlines()[-1]) == {"namespace": namespace}


def test_mixing_lightning_pytorch_in_after_lightning_skd_warns_then_fails_early(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    code = "from tests.namespace_script import mismatch; mismatch()"
    report = json.loads(run_command([sys.executable, "-c", code], cwd=tmp_path).stdout.splitlines()[-1])

    assert report["namespace"] == "pytorch_lightning"
    (warning,) = report["warnings"]  # once per process
    assert warning.startswith(
        "LightningSKDWarning: lightning_skd was imported on pytorch_lightning (the default) and lightning.pytorch is "
        "imported too: a lightning.pytorch Trainer or LightningCLI rejects this DigitsDataModule"
    )
    switch = "import lightning.pytorch before lightning_skd or set LIGHTNING_SKD_NAMESPACE=lightning.pytorch"
    assert switch in warning
    assert report["error"].startswith(
        "SelfKDCallback is attached to a lightning.pytorch.Trainer, but lightning_skd was imported on "
        "pytorch_lightning (the default)"
    )
    assert switch in report["error"]
    assert report["trained"] == 0
