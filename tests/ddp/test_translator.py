"""Translator end to end under DDP (2 CPU processes, gloo): ``configs/iwslt15/en_de_selfkd.yaml`` (Transformer with
token-level snapshot Self-KD) through the ``lightning-skd`` CLI on the synthetic corpus, shortened by overrides, with
fit, test and predict compared with single-process evaluations of the same checkpoint.

17 validation and 17 test pairs: odd, so a padding sampler would evaluate one pair twice (and BLEU would differ).
"""

import math

import pytest
import sacrebleu
import torch

from lightning_skd.data import write_synthetic_parallel_corpus
from tests.helpers.ddp import (
    CONFIGS,
    assert_metrics_equal,
    cli_run,
    last_values,
    load_predictions,
    logged,
    single_process,
)

CONFIG = CONFIGS / "iwslt15" / "en_de_selfkd.yaml"
NUM_EVAL = 17
EPOCHS = 2


@pytest.fixture(scope="module")
def translator_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_translator")
    data = root / "data"
    write_synthetic_parallel_corpus(data, num_train=96, num_valid=NUM_EVAL, num_test=NUM_EVAL, source_lang="en",
                                    target_lang="de")  # fmt: skip
    overrides = [
        f"--data.init_args.data_dir={data}",
        "--data.init_args.vocab_size=48",
        "--data.init_args.max_tokens=160",
        "--model.init_args.model.init_args.d_model=16",
        "--model.init_args.model.init_args.nhead=2",
        "--model.init_args.model.init_args.dim_feedforward=32",
        "--model.init_args.model.init_args.num_encoder_layers=1",
        "--model.init_args.model.init_args.num_decoder_layers=1",
        "--model.init_args.model.init_args.dropout=0.0",
        "--model.init_args.test_beam_sizes=[3]",
        "--model.init_args.lr_scheduler.init_args.warmup_steps=2",
        "--model.init_args.optimizer.init_args.lr=0.01",
    ]
    # Lightning 2.6 refreshes the config's last.ckpt only when its monitored val/bleu improves (here it may stay 0):
    # an extra monitor-free checkpoint holds the final weights, the ones the last validation evaluated.
    final = [
        "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={root / 'final'}",
        "--trainer.callbacks.filename=final",
    ]
    fit = cli_run("fit", CONFIG, root, "fit", f"--trainer.max_epochs={EPOCHS}", "--trainer.log_every_n_steps=1",
                  *final, *overrides)  # fmt: skip
    checkpoint = root / "final" / "final.ckpt"
    test = cli_run("test", CONFIG, root, "test", f"--ckpt_path={checkpoint}", *overrides)
    predict = cli_run("predict", CONFIG, root, "predict", f"--ckpt_path={checkpoint}", *overrides)
    references = (data / "test.de").read_text().splitlines()
    return {"root": root, "fit": fit, "test": test, "predict": predict, "checkpoint": checkpoint, "args": overrides,
            "references": references}  # fmt: skip


def reference(runs, subcommand, monkeypatch):
    monkeypatch.chdir(runs["root"])  # the config's relative checkpoint folder
    return single_process(subcommand, CONFIG, runs["root"] / "ref", runs["checkpoint"], *runs["args"])


def assert_translation_metrics_equal(distributed, single, prefix):
    assert {f"{prefix}bleu", f"{prefix}nll", f"{prefix}ece", f"{prefix}aurc", f"{prefix}loss"} <= set(distributed)
    assert_metrics_equal(distributed, single, prefix)  # relative 1e-5
    for key in distributed:
        if key.startswith(f"{prefix}bleu"):  # integer n-gram statistics summed across ranks: exactly equal
            assert distributed[key] == single[key], (key, distributed[key], single[key])


def test_translator_ddp_fit_trains_with_token_level_self_kd(translator_runs):
    values = logged(translator_runs["fit"])
    assert len(values["val/bleu"]) == EPOCHS
    assert all(math.isfinite(v) for v in values["train/loss_epoch"] + values["val/nll"])
    assert values["skd/alpha_scheduled"] == pytest.approx([0.7 * t / EPOCHS for t in range(1, EPOCHS + 1)])
    assert values["skd/teacher_coverage"][-1] > 0  # the snapshot teacher was used in epoch 2


def test_translator_ddp_val_metrics_equal_single_process_of_final_checkpoint(translator_runs, monkeypatch):
    distributed = last_values(logged(translator_runs["fit"]), "val/")
    assert_translation_metrics_equal(distributed, reference(translator_runs, "validate", monkeypatch), "val/")


def test_translator_ddp_test_metrics_equal_single_process(translator_runs, monkeypatch):
    distributed = last_values(logged(translator_runs["test"]), "test/")
    assert "test/bleu_beam3" in distributed
    assert_translation_metrics_equal(distributed, reference(translator_runs, "test", monkeypatch), "test/")


def test_translator_ddp_predict_writes_every_hypothesis_once_in_input_order(translator_runs):
    predictions = load_predictions(translator_runs["predict"])
    assert predictions["index"].tolist() == list(range(NUM_EVAL))
    assert torch.isfinite(predictions["log_prob"]).all()
    lines = (translator_runs["predict"] / "hypotheses.txt").read_text().splitlines()
    assert len(lines) == NUM_EVAL
    # greedy hypotheses in input order: their corpus BLEU is the test run's (greedy) test/bleu
    test_bleu = last_values(logged(translator_runs["test"]), "test/")["test/bleu"]
    bleu = sacrebleu.corpus_bleu(lines, [translator_runs["references"]]).score
    assert bleu == pytest.approx(test_bleu, rel=1e-6, abs=1e-6)
