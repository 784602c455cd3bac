import pytest
import torch

from lightning_skd.callbacks.prediction_table import MemoryPredictionTable


def random_probs(num_rows: int, num_classes: int, seed: int = 0, temperature: float = 0.5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(num_rows, num_classes, generator=generator) / temperature).softmax(-1)


def test_memory_prediction_table_read_returns_rows_written_in_earlier_epochs():
    cache = MemoryPredictionTable(num_rows=6, num_classes=3)
    probs = random_probs(6, 3)
    cache.write(torch.arange(6), cache.compress(probs), epoch=0)
    read, valid = cache.read(torch.tensor([5, 0, 3]), epoch=1)
    torch.testing.assert_close(read, probs[[5, 0, 3]])
    assert valid.all()
    _, valid_same_epoch = cache.read(torch.tensor([5]), epoch=0)
    assert not valid_same_epoch.any()  # never a prediction of the current epoch


def test_memory_prediction_table_first_occurrence_wins_within_an_epoch():
    cache = MemoryPredictionTable(num_rows=4, num_classes=2)
    first, second = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.2, 0.8]])
    cache.write(torch.tensor([1, 1]), cache.compress(torch.cat([first, second])), epoch=0)
    cache.write(torch.tensor([1]), cache.compress(second), epoch=0)
    torch.testing.assert_close(cache.read(torch.tensor([1]), epoch=1)[0], first)
    cache.write(torch.tensor([1]), cache.compress(second), epoch=1)
    torch.testing.assert_close(cache.read(torch.tensor([1]), epoch=2)[0], second)


def test_memory_prediction_table_float16_agrees_with_float32():
    probs = random_probs(200, 100)
    dense, half = MemoryPredictionTable(200, 100), MemoryPredictionTable(200, 100, dtype=torch.float16)
    bf16 = MemoryPredictionTable(200, 100, dtype=torch.bfloat16)
    for cache in (dense, half, bf16):
        cache.write(torch.arange(200), cache.compress(probs), epoch=0)
    reference = dense.read(torch.arange(200), epoch=1)[0]
    # documented tolerances: float16 keeps 11 significant bits, bfloat16 8 (relative error 2^-11 and 2^-8)
    torch.testing.assert_close(half.read(torch.arange(200), epoch=1)[0], reference, rtol=2**-11, atol=1e-7)
    torch.testing.assert_close(bf16.read(torch.arange(200), epoch=1)[0], reference, rtol=2**-8, atol=1e-7)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_memory_prediction_table_topk_renormalises_the_k_largest(k):
    probs = random_probs(50, 30, temperature=0.3)
    cache = MemoryPredictionTable(50, 30, topk=k)
    cache.write(torch.arange(50), cache.compress(probs), epoch=0)
    read, _ = cache.read(torch.arange(50), epoch=1)

    expected = torch.zeros_like(probs)
    for row in range(50):
        values, ids = probs[row].sort(descending=True)
        expected[row, ids[:k]] = values[:k] / values[:k].sum()
    torch.testing.assert_close(read, expected)
    # distance to the dense cache is bounded by twice the dropped mass (stated in the docs)
    dropped = 1 - probs.topk(k, dim=-1).values.sum(-1)
    assert ((read - probs).abs().sum(-1) <= 2 * dropped + 1e-6).all()


def test_memory_prediction_table_state_dict_round_trip_topk():
    cache = MemoryPredictionTable(10, 8, dtype=torch.float16, topk=3)
    cache.write(torch.arange(10), cache.compress(random_probs(10, 8)), epoch=0)
    restored = MemoryPredictionTable.from_state_dict(cache.state_dict())
    for name in ("values", "class_ids", "stamps"):
        assert torch.equal(getattr(restored, name), getattr(cache, name))


def test_memory_prediction_table_memory_of_imagenet_shape_with_topk10():
    # 1.28M x 1000 with top-10 float16 values and int16 ids: 40 bytes + 4-byte stamp per row
    cache = MemoryPredictionTable(1_281_167, 1000, dtype=torch.float16, topk=10, device="meta")
    assert cache.nbytes == 1_281_167 * (10 * 2 + 10 * 2 + 4)
    assert cache.nbytes <= 100 * 2**20


def test_memory_prediction_table_rejects_bad_input():
    with pytest.raises(ValueError, match="cache_topk"):
        MemoryPredictionTable(4, 3, topk=4)
    with pytest.raises(ValueError, match="cache_dtype"):
        MemoryPredictionTable(4, 3, dtype=torch.int8)
    cache = MemoryPredictionTable(4, 3)
    with pytest.raises(IndexError, match="has 4 samples"):
        cache.write(torch.tensor([4]), cache.compress(random_probs(1, 3)), epoch=0)
    with pytest.raises(ValueError, match="3 classes but the model outputs|has 5 classes"):
        cache.compress(random_probs(1, 5))
