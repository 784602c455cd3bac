"""ParallelTextDataModule under Lightning's DDP (2 CPU processes, gloo): what each rank's loaders yield."""

import json
import sys
import textwrap

from tests.helpers.multiprocess import run_command

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pytorch_lightning as pl
    import torch
    from lightning_skd.data import ParallelTextDataModule, write_synthetic_parallel_corpus

    class Recorder(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.seen = {"train": [], "val": [], "predict": []}

        def _loss(self, batch):
            return self.layer(batch["input"].source.float().mean(1, keepdim=True)).sum()

        def on_train_epoch_start(self):
            self.seen["train"].append([])

        def training_step(self, batch, batch_idx):
            self.seen["train"][-1].append(batch["index"].tolist())
            return self._loss(batch)  # DDP all-reduces the gradient: unequal step counts would hang here

        def validation_step(self, batch, batch_idx):
            self.seen["val"].append(batch["index"].tolist())

        def predict_step(self, batch, batch_idx):
            self.seen["predict"].append(batch["index"].tolist())
            return batch["index"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    if __name__ == "__main__":
        folder = sys.argv[1]
        write_synthetic_parallel_corpus(folder, 203, 31, 29, seed=0, source_lang="en", target_lang="de")
        # 25 training batches on one process: with 2 the sampler must split one to give both ranks 13
        dm = ParallelTextDataModule(folder, vocab_size=100, max_tokens=150, eval_max_tokens=100)
        model = Recorder()
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule=dm)
        trainer.predict(model, datamodule=dm, return_predictions=False)
        with open(f"{folder}/seen{trainer.global_rank}.json", "w") as handle:
            json.dump(model.seen, handle)
    """
)


def test_parallel_text_ddp_every_pair_once_per_epoch_with_equal_steps(tmp_path):
    (tmp_path / "record.py").write_text(SCRIPT)
    run_command([sys.executable, "record.py", str(tmp_path / "corpus")], cwd=tmp_path, timeout=300)
    ranks = [json.loads((tmp_path / "corpus" / f"seen{rank}.json").read_text()) for rank in (0, 1)]
    train = [rank["train"] for rank in ranks]
    assert len(train[0]) == len(train[1]) == 2  # epochs
    for epoch in range(2):
        assert len(train[0][epoch]) == len(train[1][epoch])  # same number of steps on both ranks
        indices = [i for rank in train for batch in rank[epoch] for i in batch]
        assert sorted(indices) == list(range(203))  # every pair exactly once per epoch
    assert train[0][0] != train[0][1]  # reshuffled between epochs
    for key, size in (("val", 31), ("predict", 29)):  # validation ran twice (once per epoch)
        indices = [i for rank in ranks for batch in rank[key] for i in batch]
        repeats = 2 if key == "val" else 1
        assert sorted(indices) == sorted(list(range(size)) * repeats)
        assert all(rank[key] for rank in ranks)  # every rank evaluated something
