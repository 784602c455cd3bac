"""Every translation row of Kim et al. Table 4 and Hahn & Choi Table 3 has a config with the papers' settings.

All 21 configs are parsed by the ``lightning-skd`` CLI (class paths and argument types checked by jsonargparse) and
their values compared with the papers (Kim et al. Sec. 3.4; Hahn & Choi Sec. 4.1 / 4.3). Each of them and the real-data
rows of ``configs/message_catalogs/`` and ``configs/message_catalogs_converged/`` run three training steps and a
validation batch through ``lightning-skd fit`` on the synthetic corpus, with overrides for the data folder and tiny
sizes.
"""

from pathlib import Path

import pytest

from lightning_skd.cli import main
from lightning_skd.data import write_synthetic_parallel_corpus
from tests.test_table_configs import parse

CONFIGS = Path(__file__).parents[1] / "configs"
KIM = [(corpus, pair, row) for corpus, pair in [("iwslt15", "en_de"), ("iwslt15", "de_en"), ("multi30k", "de_en")]
       for row in ("baseline", "label_smoothing", "selfkd")]  # fmt: skip
HAHN = [(pair, row) for pair in ("en_fi", "fi_en", "en_de") for row in ("baseline", "noise", "skd", "noise_skd")]
TINY = {
    "TransformerSeq2Seq": {"d_model": 16, "nhead": 2, "dim_feedforward": 32, "num_encoder_layers": 1,
                           "num_decoder_layers": 1},
    "AttentionLSTMSeq2Seq": {"embedding_dim": 16, "hidden_size": 16},
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def callbacks(config, class_path):
    return [cb for cb in (config.trainer.callbacks or []) if cb.class_path == class_path]


@pytest.mark.parametrize(("corpus", "pair", "row"), KIM)
def test_translation_config_kim_table4_row(corpus, pair, row):
    config = parse(CONFIGS / corpus / f"{pair}_{row}.yaml")
    init = config.model.init_args
    net = init.model.init_args
    assert init.model.class_path == "lightning_skd.models.seq2seq.TransformerSeq2Seq"
    assert (net.num_encoder_layers, net.num_decoder_layers, net.d_model, net.nhead, net.dim_feedforward) == (
        6, 6, 512, 4, 1024,
    )  # fmt: skip
    assert tuple(init.optimizer.init_args.betas) == (0.9, 0.98)
    assert config.trainer.max_epochs == 150
    assert config.data.init_args.max_tokens == 4096
    source, target = pair.split("_")
    assert (config.data.init_args.source_lang, config.data.init_args.target_lang) == (source, target)
    assert config.data.init_args.data_dir == f"data/{corpus}_{pair}"
    assert init.label_smoothing == (0.1 if row == "label_smoothing" else 0.0)
    self_kd = callbacks(config, "lightning_skd.SelfKDCallback")
    assert len(self_kd) == (row == "selfkd")
    if self_kd:
        assert (self_kd[0].init_args.alpha_T, self_kd[0].init_args.mode) == (0.7, "snapshot")
    assert not init.skd and init.embedding_noise_std == 0.0
    assert init.lr_scheduler.class_path == "lightning_skd.optim.InverseSquareRootLR"
    assert config.trainer.default_root_dir == f"outputs/{corpus}/{pair}_{row}"


@pytest.mark.parametrize(("pair", "row"), HAHN)
def test_translation_config_hahn_choi_table3_row(pair, row):
    config = parse(CONFIGS / "wmt15" / f"{pair}_{row}.yaml")
    init = config.model.init_args
    assert init.model.class_path == "lightning_skd.models.seq2seq.AttentionLSTMSeq2Seq"
    assert init.model.init_args.bidirectional_encoder
    assert config.data.init_args.vocab_size == (30000 if pair == "en_de" else 10000)
    assert list(init.test_beam_sizes) == [12]  # and greedy (beam 1) as test/bleu
    assert init.embedding_noise_std == (0.1 if "noise" in row else 0.0)
    assert init.skd == ("skd" in row)
    schedulers = callbacks(config, "lightning_skd.callbacks.SKDAlphaScheduler")
    assert len(schedulers) == ("skd" in row)
    if init.skd:
        assert init.sigma == 0.1
    assert init.label_smoothing == 0.0 and not callbacks(config, "lightning_skd.SelfKDCallback")
    assert config.data.init_args.data_dir == f"data/wmt15_{pair}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for source, target in [("en", "de"), ("de", "en"), ("en", "fi"), ("fi", "en")]:
        write_synthetic_parallel_corpus(
            folder / f"{source}_{target}", num_train=64, num_valid=8, num_test=8, source_lang=source, target_lang=target
        )
    return folder


EVERY_CONFIG = sorted(
    str(path.relative_to(CONFIGS))
    for folder in ("iwslt15", "multi30k", "wmt15", "message_catalogs", "message_catalogs_converged")
    for path in (CONFIGS / folder).glob("*.yaml")
    if not path.name.startswith("compare")  # the `lightning-skd compare` sweeps of the folder (tests/test_compare.py)
)


def test_translation_configs_are_all_run():
    assert len(EVERY_CONFIG) == len(KIM) + len(HAHN) + 4 + 6


@pytest.mark.parametrize("config", EVERY_CONFIG)
def test_translation_config_runs_a_few_steps_through_the_cli(config, corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative outputs/ folders
    path = CONFIGS / config
    parsed = parse(path)
    pair = f"{parsed.data.init_args.source_lang}_{parsed.data.init_args.target_lang}"
    architecture = parsed.model.init_args.model.class_path.rsplit(".", 1)[1]
    main(
        [
            "fit",
            "--config",
            str(path),
            f"--data.init_args.data_dir={corpus / pair}",
            f"--data.init_args.tokenizer_dir={tmp_path}",
            "--data.init_args.vocab_size=48",
            "--data.init_args.max_tokens=128",
            *(f"--model.init_args.model.init_args.{k}={v}" for k, v in TINY[architecture].items()),
            "--model.init_args.max_len_b=3",
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.val_check_interval=3",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    assert list((tmp_path / parsed.trainer.default_root_dir).rglob("checkpoints/last.ckpt"))
