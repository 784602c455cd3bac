"""TemperatureScaling: T is the fit on the validation logits, test/ values unchanged, test_ts/ ones of logits / T;
through the CLI, for a Translator's token metrics, and its errors (under 2-process DDP: tests/ddp/)."""

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.demos.boring_classes import BoringModel

from lightning_skd.callbacks import TemperatureScaling
from lightning_skd.cli import main
from lightning_skd.data import DigitsDataModule, ParallelTextDataModule, write_synthetic_parallel_corpus
from lightning_skd.functional import fit_temperature
from lightning_skd.models import ImageClassifier, Translator
from lightning_skd.models.seq2seq import TransformerSeq2Seq
from tests.helpers.ddp import TEMPERATURE_SCALING_CONFIG as CONFIG
from tests.helpers.ddp import fit_temperature_scaling, logged, logger_args
from tests.helpers.multiprocess import QUIET_ARGS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``lightning-skd fit`` of the temperature-scaling digits config (8 steps); its folder and checkpoint."""
    return fit_temperature_scaling(tmp_path_factory.mktemp("ts_fit"))


def trainer(callbacks=()):
    options = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    return pl.Trainer(accelerator="cpu", callbacks=list(callbacks), **options)


def digits_logits(model: ImageClassifier, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()  # as in the test loop (the trainer leaves the model in training mode)
    with torch.no_grad():
        pairs = [model.evaluation_logits(batch) for batch in loader]
    return torch.cat([logits for logits, _ in pairs]), torch.cat([target for _, target in pairs])


def test_cli_fit_then_test_logs_the_temperature_and_every_test_metric_again_under_test_ts(fitted):
    root, checkpoint = fitted
    assert "test/temperature" not in logged(root / "logs" / "fit")  # fit and validation: no temperature scaling
    main(["test", "--config", str(CONFIG), f"--ckpt_path={checkpoint}", *logger_args(root, "test"), *QUIET_ARGS])
    values = {key: series[-1] for key, series in logged(root / "logs" / "test").items()}
    unscaled = {key for key in values if key.startswith("test/")} - {"test/temperature"}
    assert unscaled == {
        f"test/{name}"
        for name in (
            "loss",
            "nll",
            "ece",
            "oce",
            "uce",
            "adaptive_ece",
            "brier",
            "aurc",
            "eaurc",
            "top1_err",
            "top5_err",
        )
    }
    assert {key for key in values if key.startswith("test_ts/")} == {k.replace("test/", "test_ts/") for k in unscaled}
    assert 0.01 < values["test/temperature"] < 100.0
    assert values["test_ts/top1_err"] == values["test/top1_err"]  # T > 0 keeps the arg-max
    assert values["test_ts/top5_err"] == values["test/top5_err"]
    assert sorted(p.name for p in (root / "logs" / "test" / "figures").glob("*.png")) == [
        "test_reliability_diagram.png",
        "test_risk_coverage.png",
        "test_ts_reliability_diagram.png",
        "test_ts_risk_coverage.png",
    ]


def test_temperature_is_the_fit_on_the_validation_logits_and_scales_only_the_test_ts_metrics(fitted):
    _, checkpoint = fitted
    model = ImageClassifier.load_from_checkpoint(checkpoint, log_figures=False)
    datamodule = DigitsDataModule(batch_size=64)
    (plain,) = trainer().test(model, datamodule=datamodule, verbose=False)
    callback = TemperatureScaling()
    (scaled,) = trainer([callback]).test(model, datamodule=datamodule, verbose=False)
    assert model.temperature is None  # the module's own value is back after the test

    temperature = callback.temperature
    val_logits, val_target = digits_logits(model, datamodule.val_dataloader())
    assert len(val_target) == 359  # the whole split, whatever limit_val_batches says
    assert temperature == pytest.approx(fit_temperature(val_logits, val_target), rel=1e-12)
    assert scaled["test/temperature"] == pytest.approx(temperature, rel=1e-6)  # logged as float32
    # never worse than T = 1 on the split it was fitted on
    assert F.cross_entropy(val_logits.double() / temperature, val_target) <= F.cross_entropy(val_logits, val_target)

    for key, value in plain.items():  # test/ values unchanged
        assert scaled[key] == value, key
        assert f"test_ts/{key.removeprefix('test/')}" in scaled
    test_logits, test_target = digits_logits(model, datamodule.test_dataloader())
    assert scaled["test_ts/nll"] == pytest.approx(F.cross_entropy(test_logits / temperature, test_target).item(), 1e-5)
    assert scaled["test_ts/loss"] == pytest.approx(scaled["test_ts/nll"], rel=1e-5)
    assert scaled["test_ts/top1_err"] == plain["test/top1_err"]

    state = callback.state_dict()
    assert state == {"temperature": temperature}
    restored = TemperatureScaling()
    restored.load_state_dict(state)
    assert restored.temperature == temperature


def test_translator_token_metrics_are_scaled_and_bleu_is_left_alone(tmp_path):
    write_synthetic_parallel_corpus(tmp_path, num_train=64, num_valid=8, num_test=8)
    datamodule = ParallelTextDataModule(
        data_dir=str(tmp_path), source_lang="src", target_lang="tgt", vocab_size=48, max_tokens=128
    )
    network = functools.partial(
        TransformerSeq2Seq, num_encoder_layers=1, num_decoder_layers=1, d_model=16, nhead=2, dim_feedforward=32
    )
    pl.seed_everything(0)
    model = Translator(network, test_beam_sizes=(), max_len_b=3)
    callback = TemperatureScaling()
    (values,) = trainer([callback]).test(model, datamodule=datamodule, verbose=False)
    logits, target = [], []
    model.eval()
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            batch_logits, batch_target = model.evaluation_logits(batch)
            logits.append(batch_logits[batch_target != -100])
            target.append(batch_target[batch_target != -100])
    assert callback.temperature == pytest.approx(fit_temperature(torch.cat(logits), torch.cat(target)), rel=1e-12)
    scaled = {key.removeprefix("test_ts/") for key in values if key.startswith("test_ts/")}
    assert scaled == set(
        ("loss", "nll", "ece", "oce", "uce", "adaptive_ece", "brier", "aurc", "eaurc", "top1_err", "top5_err")
    )  # no BLEU
    assert values["test_ts/top1_err"] == values["test/top1_err"]
    assert "test/bleu" in values


def test_refuses_a_test_without_validation_loader_or_a_module_without_the_seam_and_bad_bounds(tmp_path):
    model = ImageClassifier("lightning_skd:small_cnn", num_classes=10, in_channels=1, log_figures=False)
    datamodule = DigitsDataModule(batch_size=64)
    datamodule.setup()
    with pytest.raises(ValueError, match=r"no validation dataloader.*val_dataloader\(\)"):
        trainer([TemperatureScaling()]).test(model, dataloaders=datamodule.test_dataloader(), verbose=False)
    assert model.temperature is None
    with pytest.raises(ValueError, match="evaluation_logits.*BoringModel has not"):
        trainer([TemperatureScaling()]).test(BoringModel(), verbose=False)
    with pytest.raises(ValueError, match="TemperatureScaling: `max_temperature`"):
        TemperatureScaling(max_temperature=float("inf"))
    with pytest.raises(ValueError, match="below"):
        TemperatureScaling(min_temperature=2.0, max_temperature=1.0)
