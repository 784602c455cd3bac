import json
from pathlib import Path

import pytest
import torch

from lightning_skd.data import ParallelTextDataModule, TranslationInput, write_synthetic_parallel_corpus
from lightning_skd.data.parallel_text import IGNORE_INDEX
from lightning_skd.data.subword import SubwordTokenizer

GERMAN = [
    ("The house is small.", "Das Haus ist klein."),
    ("The street is long!", "Die Straße ist lang!"),
    ("Open the file, please.", "Öffnen Sie bitte die Datei."),
    ("Save the document (again)?", "Das Dokument (erneut) speichern?"),
    ("Größe: 12 pt", "Größe: 12 pt"),
]


def _write(folder: Path, split: str, pairs, source_lang="en", target_lang="de") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.{source_lang}").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (folder / f"{split}.{target_lang}").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")


@pytest.fixture
def toy(tmp_path) -> Path:
    write_synthetic_parallel_corpus(tmp_path / "toy", 300, 41, 37, seed=0, source_lang="en", target_lang="de")
    return tmp_path / "toy"


def _module(data_dir: Path, **kwargs) -> ParallelTextDataModule:
    kwargs.setdefault("vocab_size", 120)
    kwargs.setdefault("max_tokens", 160)
    return ParallelTextDataModule(str(data_dir), **kwargs)


def _epoch(loader) -> list[dict]:
    return list(loader)


def test_parallel_text_batch_layout_and_special_ids(toy):
    dm = _module(toy)
    dm.setup("fit")
    assert (dm.pad_id, dm.bos_id, dm.eos_id, dm.unk_id) == (0, 1, 2, 3)
    assert dm.src_vocab_size == dm.tgt_vocab_size == 120 and dm.joint_vocabulary
    for batch in _epoch(dm.train_dataloader()):
        assert set(batch) == {"input", "target", "index"}
        inputs, target = batch["input"], batch["target"]
        assert isinstance(inputs, TranslationInput)
        for tensor in (*inputs, target, batch["index"]):
            assert tensor.dtype == torch.int64
        size = len(batch["index"])
        assert inputs.source.shape == (size, int(inputs.source_lengths.max()))
        assert inputs.target_input.shape == target.shape
        target_lengths = (target != IGNORE_INDEX).sum(1)
        assert target.shape[1] == int(target_lengths.max())
        for row in range(size):
            n, m = int(inputs.source_lengths[row]), int(target_lengths[row])
            assert inputs.source[row, n - 1] == dm.eos_id and (inputs.source[row, n:] == dm.pad_id).all()
            assert (inputs.source[row, : n - 1] > dm.eos_id).all()  # no special id inside the sentence
            assert (target[row, :m] != IGNORE_INDEX).all() and (target[row, m:] == IGNORE_INDEX).all()  # a prefix
            assert target[row, m - 1] == dm.eos_id
            assert inputs.target_input[row, 0] == dm.bos_id and (inputs.target_input[row, m:] == dm.pad_id).all()
            assert torch.equal(inputs.target_input[row, 1:m], target[row, : m - 1])  # shifted by one
        assert size * max(inputs.source.shape[1], target.shape[1]) <= 160


def test_parallel_text_target_lengths_match_batches_and_every_pair_once(toy):
    dm = _module(toy)
    dm.setup("fit")
    lengths = dm.train_target_lengths()
    assert lengths.dtype == torch.int64 and lengths.shape == (300,)
    seen = []
    for batch in _epoch(dm.train_dataloader()):
        assert torch.equal((batch["target"] != IGNORE_INDEX).sum(1), lengths[batch["index"]])
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(300))


def test_parallel_text_loader_with_worker_processes(toy):
    dm = _module(toy, num_workers=2)
    dm.setup("fit")
    seen = sorted(i for batch in dm.train_dataloader() for i in batch["index"].tolist())
    assert seen == list(range(300))


def test_parallel_text_decode_gives_back_the_references(toy):
    dm = _module(toy)
    dm.setup("fit")
    references = dm.references("val")
    assert references == (toy / "valid.de").read_text().splitlines()
    sources = (toy / "valid.en").read_text().splitlines()
    seen = []
    for batch in _epoch(dm.val_dataloader()):
        for row, index in enumerate(batch["index"].tolist()):
            assert dm.decode_target(batch["target"][row]) == references[index]
            assert dm.decode_target(batch["input"].target_input[row]) == references[index]
            assert dm.decode_source(batch["input"].source[row]) == sources[index]
            seen.append(index)
    assert sorted(seen) == list(range(41))


def test_parallel_text_detokenises_real_text_exactly(tmp_path):
    _write(tmp_path, "train", GERMAN * 3)
    _write(tmp_path, "valid", GERMAN)
    dm = _module(tmp_path, vocab_size=200)
    dm.setup("validate")
    for index, (source, target) in enumerate(GERMAN):
        dataset = dm.load_split("val")
        src, tgt, _ = dataset[index]
        assert dm.decode_source(src) == source
        assert dm.decode_target(tgt) == target


def test_parallel_text_eval_loaders_sorted_and_deterministic(toy):
    dm = _module(toy, predict_split="val")
    dm.setup("fit")
    first = [b["index"].tolist() for b in dm.val_dataloader()]
    assert first == [b["index"].tolist() for b in dm.val_dataloader()]
    assert first == [b["index"].tolist() for b in dm.predict_dataloader()]
    dataset = dm.load_split("val")
    cost = torch.maximum(dataset.source_lengths, dataset.target_lengths)
    flat = [i for batch in first for i in batch]
    assert flat == sorted(range(41), key=lambda i: (int(cost[i]), i))


def test_parallel_text_training_shuffle_follows_the_epoch_and_seed(toy):
    dm = _module(toy, seed=3)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epoch0 = [b["index"].tolist() for b in loader]
    loader.sampler.set_epoch(1)
    epoch1 = [b["index"].tolist() for b in loader]
    assert epoch0 != epoch1 and len(epoch0) == len(epoch1) == len(loader)
    loader.sampler.set_epoch(0)
    assert [b["index"].tolist() for b in loader] == epoch0
    other = _module(toy, seed=4)
    other.setup("fit")
    assert [b["index"].tolist() for b in other.train_dataloader()] != epoch0


def test_parallel_text_tokenizer_is_saved_and_reused(toy):
    dm = _module(toy)
    dm.prepare_data()
    path, same = dm.tokenizer_paths()
    assert path == same == toy / "bpe120.en-de.joint.json"
    meta = json.loads(SubwordTokenizer.meta_path(path).read_text())
    assert [f["name"] for f in meta["files"]] == ["train.en", "train.de"]
    before = path.stat().st_mtime_ns
    again = _module(toy)
    again.setup("fit")
    assert path.stat().st_mtime_ns == before  # loaded, not trained again
    assert again.build_tokenizers()[1].tokenizer.to_str() == dm.build_tokenizers()[1].tokenizer.to_str()


def test_parallel_text_separate_vocabularies(toy, tmp_path):
    dm = _module(toy, joint_vocabulary=False, vocab_size=80, tokenizer_dir=str(tmp_path / "tok"))
    dm.setup("fit")
    source_path, target_path = dm.tokenizer_paths()
    assert source_path.is_file() and target_path.is_file() and source_path != target_path
    assert not dm.joint_vocabulary
    assert dm.decode_target(dm.load_split("train")[0][1]) == dm.references("train")[0]


def test_parallel_text_tokenizer_of_other_data_is_an_error(toy):
    _module(toy).prepare_data()
    with open(toy / "train.de", "a", encoding="utf-8") as handle:
        handle.write("noch ein satz\n")
    with open(toy / "train.en", "a", encoding="utf-8") as handle:
        handle.write("one more sentence\n")
    with pytest.raises(ValueError, match=r"bpe120\.en-de\.joint\.json.*other data or settings.*training files"):
        _module(toy).setup("fit")


def test_parallel_text_tokenizer_of_other_settings_is_an_error(toy):
    _module(toy).prepare_data()
    with pytest.raises(ValueError, match=r"other data or settings.*settings.*min_frequency"):
        _module(toy, min_frequency=1).setup("fit")


def test_parallel_text_tokenizer_without_fingerprint_is_an_error(toy):
    dm = _module(toy)
    dm.prepare_data()
    path, _ = dm.tokenizer_paths()
    SubwordTokenizer.meta_path(path).unlink()
    with pytest.raises(ValueError, match=r"bpe120\.en-de\.joint\.json.*no fingerprint"):
        _module(toy).setup("fit")


def test_parallel_text_missing_file_is_an_error_naming_it(toy):
    (toy / "test.de").unlink()
    dm = _module(toy)
    dm.setup("fit")  # fit does not need the test split
    with pytest.raises(FileNotFoundError, match=r"test\.de.*IWSLT15.*Multi30k.*WMT15"):
        dm.setup("test")


def test_parallel_text_empty_file_is_an_error_naming_it(toy):
    (toy / "valid.en").write_text("\n\n")
    with pytest.raises(ValueError, match=r"valid\.en' is empty"):
        _module(toy).setup("fit")


def test_parallel_text_mismatched_line_counts_are_an_error_naming_both_files(toy):
    lines = (toy / "train.de").read_text().splitlines()
    (toy / "train.de").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"train\.en' has 300 lines but .*train\.de' has 299"):
        _module(toy).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(vocab_size=3), "vocab_size"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(overlong="drop"), "overlong"),
        (dict(eval_overlong="cut"), "eval_overlong"),
        (dict(predict_split="dev"), "predict_split"),
        (dict(source_lang="de"), "must differ"),
        (dict(max_target_tokens=1), "max_target_tokens"),
    ],
)
def test_parallel_text_rejects_bad_arguments(toy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _module(toy, **kwargs)


def _overlong_corpus(folder: Path) -> None:
    pairs = [("a b", "x y")] * 6
    pairs[2] = ("a b " * 20, "x y " * 20)  # line 3 is long on both sides
    pairs[4] = ("a b", "x y " * 20)  # line 5 is long on the target side only
    _write(folder, "train", pairs)
    _write(folder, "valid", pairs)


def test_parallel_text_overlong_filter(tmp_path):
    _overlong_corpus(tmp_path)
    dm = _module(tmp_path, vocab_size=20, max_source_tokens=10, max_target_tokens=10, overlong="filter")
    dm.setup("fit")
    train = dm.load_split("train")
    assert len(train) == 4 and train.line_numbers.tolist() == [0, 1, 3, 5]
    assert dm.references("train") == ["x y"] * 4
    assert len(dm.train_target_lengths()) == 4
    assert len(dm.references("val")) == 6  # evaluation keeps every pair by default
    seen = sorted(i for b in dm.train_dataloader() for i in b["index"].tolist())
    assert seen == [0, 1, 2, 3]


def test_parallel_text_overlong_truncate(tmp_path):
    _overlong_corpus(tmp_path)
    dm = _module(tmp_path, vocab_size=20, max_source_tokens=7, max_target_tokens=5, overlong="truncate")
    dm.setup("fit")
    lengths = dm.train_target_lengths()
    assert len(lengths) == 6 and int(lengths.max()) == 5
    for batch in dm.train_dataloader():
        assert int(batch["input"].source_lengths.max()) <= 7
        target_lengths = (batch["target"] != IGNORE_INDEX).sum(1)
        assert torch.equal(target_lengths, lengths[batch["index"]])
        rows = torch.arange(len(target_lengths))
        assert (batch["target"][rows, target_lengths - 1] == dm.eos_id).all()  # EOS kept after the cut


def test_parallel_text_overlong_error_names_file_and_line(tmp_path):
    _overlong_corpus(tmp_path)
    dm = _module(tmp_path, vocab_size=20, max_source_tokens=10, max_target_tokens=10, overlong="error")
    with pytest.raises(ValueError, match=r"line 3 of .*train\.en' has \d+ tokens .*limit 10"):
        dm.setup("fit")
    dm = _module(tmp_path, vocab_size=20, max_target_tokens=10, overlong="keep", eval_overlong="error")
    with pytest.raises(ValueError, match=r"line 3 of .*valid\.de'.*eval_overlong"):
        dm.setup("fit")


class _Recorder:
    """A tiny LightningModule that records the indices of the batches it sees."""

    @staticmethod
    def make():
        import pytorch_lightning as pl

        class Recorder(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(1))
                self.train_indices: list[list[int]] = []

            def training_step(self, batch, batch_idx):
                self.train_indices.append(batch["index"].tolist())
                return (self.weight * batch["input"].source.float().mean()).sum()

            def predict_step(self, batch, batch_idx):
                return batch["index"]

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Recorder()


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
def test_parallel_text_runs_under_a_trainer_with_epoch_reshuffle_and_predict(toy, trainer_factory):
    dm = _module(toy, max_tokens=400)
    model = _Recorder.make()
    trainer = trainer_factory(max_epochs=2, devices=1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    per_epoch = len(trainer.train_dataloader)
    first, second = model.train_indices[:per_epoch], model.train_indices[per_epoch:]
    assert len(second) == per_epoch and first != second  # Lightning called set_epoch(1)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(300))
    predictions = trainer.predict(model, datamodule=dm)
    assert sorted(torch.cat(predictions).tolist()) == list(range(37))  # predict_split="test"


def test_parallel_text_lightning_keeps_the_token_sampler_under_ddp(toy):
    import pytorch_lightning as pl
    from pytorch_lightning.trainer.states import RunningStage

    from lightning_skd.data.token_batching import TokenBatchSampler

    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)  # not launched: rank 0 of 2
    assert trainer.world_size == 2 and trainer._accelerator_connector.use_distributed_sampler
    dm = _module(toy)
    dm.trainer = trainer
    dm.setup("fit")
    for make, stage in (
        (dm.train_dataloader, RunningStage.TRAINING),
        (dm.val_dataloader, RunningStage.VALIDATING),
        (dm.predict_dataloader, RunningStage.PREDICTING),
    ):
        loader = make()
        assert isinstance(loader.sampler, TokenBatchSampler)
        assert (loader.sampler.num_replicas, loader.sampler.rank) == (2, 0)
        expected = [b["index"].tolist() for b in loader]
        prepared = trainer._data_connector._prepare_dataloader(
            loader, shuffle=stage == RunningStage.TRAINING, mode=stage
        )
        assert isinstance(prepared.sampler, TokenBatchSampler)
        assert [b["index"].tolist() for b in prepared] == expected
