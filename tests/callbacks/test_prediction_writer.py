import pytest
import pytorch_lightning as pl
import torch

from lightning_skd.callbacks import PredictionWriter
from lightning_skd.callbacks.prediction_writer import _concatenate, _merge
from lightning_skd.data import DigitsDataModule
from lightning_skd.models import ImageClassifier


def test_prediction_writer_single_process_writes_rows_in_index_order(tmp_path):
    torch.manual_seed(0)
    writer = PredictionWriter(output_dir=tmp_path / "out")
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False, limit_predict_batches=3
    )
    model = ImageClassifier(backbone="lightning_skd:small_cnn", num_classes=10, in_channels=1)
    returned = trainer.predict(model, datamodule=DigitsDataModule(batch_size=32))
    written = torch.load(tmp_path / "out" / "predictions.pt", weights_only=True)
    assert writer.path == tmp_path / "out" / "predictions.pt"
    assert written["index"].tolist() == list(range(96))
    torch.testing.assert_close(written["probs"], torch.cat([b["probs"] for b in returned]))
    assert not list((tmp_path / "out").glob("*.rank*"))


def test_prediction_writer_merge_sorts_ranks_by_index():
    rank0 = {"index": torch.tensor([0, 2, 4]), "value": torch.tensor([0.0, 2.0, 4.0])}
    rank1 = {"index": torch.tensor([1, 3]), "value": torch.tensor([1.0, 3.0])}
    merged = _merge([rank0, rank1])
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_prediction_writer_refuses_a_sample_predicted_twice():
    rank0 = {"index": torch.tensor([0, 2]), "value": torch.zeros(2)}
    rank1 = {"index": torch.tensor([1, 0]), "value": torch.zeros(2)}  # a padding sampler repeated sample 0
    with pytest.raises(RuntimeError, match=r"samples \[0\] were predicted by more than one process"):
        _merge([rank0, rank1])


@pytest.mark.parametrize(
    ("predictions", "match"),
    [
        ([torch.zeros(2, 3)], "must return a dict of tensors .* got Tensor"),
        ([{"probs": torch.zeros(2, 3)}], r"under 'index'; got dict with keys \['probs'\]"),
        ([[{"index": torch.zeros(1)}], [{"index": torch.zeros(1)}]], "expected one predict dataloader"),
    ],
)
def test_prediction_writer_rejects_outputs_without_indices(predictions, match):
    with pytest.raises(ValueError, match=match):
        _concatenate(predictions)


def test_prediction_writer_rejects_bad_filename():
    with pytest.raises(ValueError, match="`filename` must be a plain file name, got 'a/b.pt'"):
        PredictionWriter(filename="a/b.pt")


def test_prediction_writer_pads_rows_of_different_lengths_with_zeros():
    # e.g. translation hypotheses: each batch (and each rank) has its own longest row
    batch0 = {"index": torch.tensor([0, 3]), "tokens": torch.tensor([[5, 6, 7], [8, 0, 0]])}
    batch1 = {"index": torch.tensor([2]), "tokens": torch.tensor([[9]])}
    rank0 = _concatenate([batch0, batch1])
    assert rank0["tokens"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 0, 0]]
    rank1 = {"index": torch.tensor([1]), "tokens": torch.tensor([[4, 4, 4, 4]])}
    merged = _merge([rank0, rank1])
    assert merged["index"].tolist() == [0, 1, 2, 3]
    assert merged["tokens"].tolist() == [[5, 6, 7, 0], [4, 4, 4, 4], [9, 0, 0, 0], [8, 0, 0, 0]]
