"""LanguageModel end to end under DDP (2 CPU processes, gloo): ``configs/ptb/noise_skd.yaml`` through the
``lightning-skd`` CLI on a corpus the test writes, shortened by overrides, compared with single-process evaluations.
"""

import math
import random

import pytest
import torch

from tests.helpers.ddp import (
    CONFIGS,
    assert_metrics_equal,
    cli_run,
    last_values,
    load_predictions,
    logged,
    single_process,
)

CONFIG = CONFIGS / "ptb" / "noise_skd.yaml"
NUM_TEST = 17  # odd: a padding sampler would evaluate one sentence twice
# SKD must be active within the short run: same callbacks as the config, with K = 2 steps and a large eta.
SHORT_SCHEDULE = """\
trainer:
  callbacks:
    - class_path: lightning_skd.callbacks.SKDAlphaScheduler
      init_args: {warmup_steps: 2, eta: 0.25}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {dirpath: outputs/ptb/noise_skd/checkpoints, filename: best, monitor: val/sentence_nll, mode: min,
                  save_last: true}
"""


def write_ptb_corpus(folder):
    rng = random.Random(0)
    subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "eats", "likes"], ["the fish", "a mouse"]
    folder.mkdir(parents=True)
    for name, count in [("ptb.train.txt", 96), ("ptb.valid.txt", 16), ("ptb.test.txt", NUM_TEST)]:
        lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} ." for _ in range(count)]
        (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_lm")
    write_ptb_corpus(root / "data" / "ptb")
    (root / "short_schedule.yaml").write_text(SHORT_SCHEDULE)
    # Every run, the single-process references included, uses the short schedule: the SKDAlphaScheduler restored
    # from the checkpoint then matches the configured one (no "differs from the configured" warning).
    overrides = [
        "--config",
        str(root / "short_schedule.yaml"),
        f"--data.init_args.data_dir={root / 'data' / 'ptb'}",
        "--model.init_args.embedding_dim=16",
        "--model.init_args.hidden_size=16",
    ]
    fit = cli_run("fit", CONFIG, root, "fit", "--trainer.max_epochs=3", "--trainer.log_every_n_steps=1", *overrides)
    checkpoint = root / "outputs" / "ptb" / "noise_skd" / "checkpoints" / "last.ckpt"
    test = cli_run("test", CONFIG, root, "test", f"--ckpt_path={checkpoint}", *overrides)
    predict = cli_run("predict", CONFIG, root, "predict", f"--ckpt_path={checkpoint}", *overrides)
    return {"root": root, "fit": fit, "test": test, "predict": predict, "checkpoint": checkpoint, "args": overrides}


def reference(lm_runs, subcommand, monkeypatch):
    monkeypatch.chdir(lm_runs["root"])  # the config's relative checkpoint folder
    return single_process(subcommand, CONFIG, lm_runs["root"] / "ref", lm_runs["checkpoint"], *lm_runs["args"])


def test_language_model_ddp_fit_trains_with_skd(lm_runs):
    values = logged(lm_runs["fit"])
    assert len(values["val/sentence_nll"]) == 3
    assert all(math.isfinite(v) for v in values["val/sentence_nll"] + values["val/ppl"])
    assert values["val/sentence_nll"][-1] < values["val/sentence_nll"][0]
    assert max(values["skd/alpha"]) > 0  # SKD engaged after K = 2 steps
    assert all(0.0 <= q <= 0.5 for q in values["skd/q_n"])


def test_language_model_ddp_val_metrics_equal_single_process_of_final_checkpoint(lm_runs, monkeypatch):
    distributed = last_values(logged(lm_runs["fit"]), "val/")
    assert_metrics_equal(distributed, reference(lm_runs, "validate", monkeypatch), "val/")


def test_language_model_ddp_test_metrics_equal_single_process(lm_runs, monkeypatch):
    distributed = last_values(logged(lm_runs["test"]), "test/")
    assert_metrics_equal(distributed, reference(lm_runs, "test", monkeypatch), "test/")


def test_language_model_ddp_predict_gathers_every_sentence(lm_runs, monkeypatch):
    predictions = load_predictions(lm_runs["predict"])
    assert predictions["index"].tolist() == list(range(NUM_TEST))
    assert (predictions["tokens"] == 7).all()  # e.g. "the cat sees a mouse ." and <eos>
    test_nll = reference(lm_runs, "test", monkeypatch)["test/sentence_nll"]
    assert predictions["sentence_nll"].mean().item() == pytest.approx(test_nll, rel=1e-5)
    assert torch.isfinite(predictions["sentence_nll"]).all()
