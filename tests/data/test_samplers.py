from types import SimpleNamespace

import pytest
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

from lightning_skd.data import DigitsDataModule, TextLMDataModule
from lightning_skd.data.samplers import evaluation_sampler
from tests.data.test_text_lm import write_corpus


def fake_trainer(rank, world_size=2):
    return SimpleNamespace(world_size=world_size, global_rank=rank)


def indices_per_rank(datamodule, loader_name, world_size=2):
    per_rank = []
    for rank in range(world_size):
        datamodule.trainer = fake_trainer(rank, world_size)
        loader = getattr(datamodule, loader_name)()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        per_rank.append([i for batch in loader for i in batch[-1].tolist()])
    datamodule.trainer = None
    return per_rank


@pytest.mark.parametrize("loader_name", ["val_dataloader", "test_dataloader", "predict_dataloader"])
def test_evaluation_sampler_digits_every_sample_once_across_ranks(loader_name):
    datamodule = DigitsDataModule(batch_size=64, seed=0)
    datamodule.setup("fit")
    datamodule.setup("test")
    per_rank = indices_per_rank(datamodule, loader_name)
    assert len(per_rank[0]) - len(per_rank[1]) == 1  # 359 samples: no padding, ranks differ by one
    assert sorted(per_rank[0] + per_rank[1]) == list(range(359))


def test_evaluation_sampler_text_lm_every_sentence_once_across_ranks(tmp_path):
    write_corpus(tmp_path)
    (tmp_path / "valid.txt").write_text("".join(f"the cat sat {i}\n" for i in range(5)))
    datamodule = TextLMDataModule(data_dir=str(tmp_path), batch_size=2)
    datamodule.setup("fit")
    per_rank = indices_per_rank(datamodule, "val_dataloader")
    assert sorted(per_rank[0] + per_rank[1]) == list(range(5))


def test_evaluation_sampler_text_lm_split_smaller_than_world_size_is_refused(tmp_path):
    datamodule = TextLMDataModule(data_dir=str(write_corpus(tmp_path)), batch_size=2)  # 1 validation sentence
    datamodule.setup("fit")
    datamodule.trainer = fake_trainer(0)
    with pytest.raises(ValueError, match="TextLMDataModule: an evaluation split needs at least one sample"):
        datamodule.val_dataloader()


def test_evaluation_sampler_training_loader_is_left_to_lightning():
    datamodule = DigitsDataModule(batch_size=64, seed=0)
    datamodule.setup("fit")
    datamodule.trainer = fake_trainer(0)
    assert not isinstance(datamodule.train_dataloader().sampler, UnrepeatedDistributedSampler)


def test_evaluation_sampler_single_process_and_too_small_datasets():
    assert evaluation_sampler(fake_trainer(0, world_size=1), list(range(3)), "DM") is None
    with pytest.raises(ValueError, match=r"DM: an evaluation split needs at least one sample per process.*got 1"):
        evaluation_sampler(fake_trainer(0, world_size=2), [0], "DM")
