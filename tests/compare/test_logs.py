import math

from lightning_skd.compare.logs import epoch_means, read_epoch_metrics


def write_metrics(run_dir, version, text):
    folder = run_dir / "lightning_logs" / f"version_{version}"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(text)


def test_read_epoch_metrics_merges_rows_of_an_epoch_and_a_resumed_version_overrides(tmp_path):
    write_metrics(tmp_path, 0, "epoch,step,skd/alpha,val/bleu\n0,4,0.1,\n0,4,,1.0\n1,9,0.2,\n1,9,,2.0\n")
    # versions are read in numeric order: version_10 (the resume) comes after version_2, not before it
    write_metrics(tmp_path, 2, "epoch,step,skd/alpha,val/bleu\n1,9,,2.5\n")
    write_metrics(tmp_path, 10, "epoch,step,skd/alpha,val/bleu\n1,9,0.3,3.0\n2,14,0.4,\n")
    assert read_epoch_metrics(tmp_path, ["val/bleu", "skd/alpha", "val/nll"]) == {
        0: {"skd/alpha": 0.1, "val/bleu": 1.0},
        1: {"skd/alpha": 0.3, "val/bleu": 3.0},
        2: {"skd/alpha": 0.4},
    }


def test_read_epoch_metrics_of_a_folder_without_logs_is_empty(tmp_path):
    assert read_epoch_metrics(tmp_path, ["val/bleu"]) == {}


def test_epoch_means_average_over_the_runs_that_logged_each_value():
    runs = [{0: {"a": 1.0, "b": 4.0}, 1: {"a": 3.0}}, {0: {"a": 2.0}}]
    rows = epoch_means(runs, ["a", "b", "c"])
    assert [(r["epoch"], r["seeds"], r["a"], r["b"]) for r in rows] == [(1, 2, 1.5, 4.0), (2, 1, 3.0, rows[1]["b"])]
    assert math.isnan(rows[1]["b"]) and all(math.isnan(r["c"]) for r in rows)
