"""Two CPU processes (gloo over loopback), each with part of the data, must give the single-process results."""

import faulthandler
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_skd.metrics import (
    AURC,
    EAURC,
    AdaptiveExpectedCalibrationError,
    BrierScore,
    CalibrationMetrics,
    ExpectedCalibrationError,
    NegativeLogLikelihood,
    OverconfidenceError,
    TopKError,
    UnderconfidenceError,
)
from tests.helpers.reference_metrics import random_probs

NUM_CLASSES = 10
HANG_TIMEOUT_S = 120
# Uneven splits of the 1000 samples: (rank 0, rank 1); the last leaves rank 1 without any data.
SPLITS = [(500, 500), (731, 269), (1000, 0)]


def _make_metrics():
    return {
        "collection": CalibrationMetrics(NUM_CLASSES, n_bins=10, prefix="val/"),
        "ece_l2": ExpectedCalibrationError(norm="l2"),
        "ece_max": ExpectedCalibrationError(norm="max"),
        "aurc": AURC(),
        "eaurc_closed_form": EAURC(oracle="closed_form"),
        "nll": NegativeLogLikelihood(),
        "top3_err": TopKError(k=3),
        "oce": OverconfidenceError(n_bins=12),
        "uce": UnderconfidenceError(n_bins=12),
        "adaptive_ece": AdaptiveExpectedCalibrationError(n_bins=12),
        "adaptive_ece_max": AdaptiveExpectedCalibrationError(n_bins=7, norm="max"),
        "brier": BrierScore(),
    }


def _compute_all(metrics, with_figures=False):
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        if isinstance(value, dict):
            out.update({key: v.item() for key, v in value.items()})
        else:
            out[name] = value.item()
    if with_figures:
        figures = metrics["collection"].plot_figures()
        out["reliability_title"] = figures["reliability_diagram"].axes[0].get_title()
        out["risk_coverage_legend"] = [t.get_text() for t in figures["risk_coverage"].axes[0].get_legend().get_texts()]
    return out


def _data():
    # Ties included (quantised probabilities), so the AURC tie convention is exercised across ranks too.
    probs, target = random_probs(1000, NUM_CLASSES, 0, ties=True)
    return probs, target


def _worker(rank, world_size, port, out_path):
    # A hang fails fast: each process prints the stack of every thread and exits, and join() then raises.
    faulthandler.dump_traceback_later(HANG_TIMEOUT_S, exit=True)
    torch.set_num_threads(1)  # forked child: stay out of the parent's OpenMP pool (as DataLoader workers do)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        probs, target = _data()
        results = []
        for split in SPLITS:
            start = sum(split[:rank])
            shard_p, shard_t = probs[start : start + split[rank]], target[start : start + split[rank]]
            metrics = _make_metrics()
            for chunk_p, chunk_t in zip(shard_p.split(128), shard_t.split(128), strict=True):
                for metric in metrics.values():
                    metric.update(chunk_p, chunk_t)
            results.append(_compute_all(metrics, with_figures=True))
        torch.save(results, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_two_processes_equal_single_process(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    out_path = tmp_path / "results.pt"
    # fork: the children reuse the imported modules (spawn would re-import torch and lightning_skd, seconds each)
    mp.start_processes(_worker, args=(2, _free_port(), str(out_path)), nprocs=2, join=True, start_method="fork")
    per_rank = [torch.load(f"{out_path}.{rank}") for rank in range(2)]

    probs, target = _data()
    single_metrics = _make_metrics()
    for metric in single_metrics.values():
        metric.update(probs, target)
    single = _compute_all(single_metrics, with_figures=True)

    for rank, results in enumerate(per_rank):
        for split, result in zip(SPLITS, results, strict=True):
            assert set(result) == set(single)
            for key, value in single.items():
                if isinstance(value, float):
                    assert result[key] == pytest.approx(value, abs=1e-6), (rank, split, key)
                else:
                    assert result[key] == value, (rank, split, key)
