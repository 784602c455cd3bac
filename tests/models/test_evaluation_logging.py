"""log_evaluation: the end-of-epoch logging of the task modules' global evaluation values."""

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from lightning_skd.models.evaluation_logging import log_evaluation


class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.logged = {}

    def log(self, name, value, **kwargs):
        self.logged[name] = (value, kwargs)


def test_log_evaluation_logs_global_values_as_float32_and_resets_the_metrics():
    module, metric = Recorder(), MeanMetric()
    metric.update(torch.tensor([1.0, 3.0]))
    values = {"val/loss": metric.compute(), "val/bleu": torch.tensor(12.5, dtype=torch.float64), "val/n": 3.0}
    log_evaluation(module, values, prog_bar={"val/bleu"}, reset=[metric])
    assert module.logged["val/loss"][0] == 2.0 and module.logged["val/bleu"][0].dtype == torch.float32
    assert module.logged["val/n"][0] == 3.0
    assert {name: kwargs["prog_bar"] for name, (_, kwargs) in module.logged.items()} == {
        "val/loss": False,
        "val/bleu": True,
        "val/n": False,
    }
    assert all(kwargs["sync_dist"] for _, kwargs in module.logged.values())
    assert metric.update_count == 0  # reset
