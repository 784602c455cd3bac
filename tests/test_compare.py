"""``lightning-skd compare``: table rows, columns, paired differences on digits; a resume redoes only missing runs."""

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from lightning_skd.cli import main as cli_main
from lightning_skd.compare import CLASSIFICATION_METRICS, Metric, Sweep, paired_difference
from lightning_skd.data import write_synthetic_parallel_corpus

REPO = Path(__file__).parents[1]
TOY_TRANSLATION_SWEEP = REPO / "configs" / "message_catalogs" / "compare_toy.yaml"
FAST = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=0",
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--model.init_args.log_figures=false",
]


def write_sweep(tmp_path: Path) -> Path:
    sweep = {
        "output_dir": str(tmp_path / "out"),
        "seeds": [0, 1],
        "baseline": "Baseline",
        "args": FAST,
        "methods": [
            {"name": "Baseline", "config": str(REPO / "configs/digits/baseline.yaml")},
            {"name": "+ Label smoothing", "config": str(REPO / "configs/digits/label_smoothing.yaml")},
        ],
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def read_runs(out: Path) -> dict[tuple[str, int], dict[str, float]]:
    with open(out / "runs.csv") as f:
        return {(row["method"], int(row["seed"])): row for row in csv.DictReader(f)}


def test_compare_writes_table_with_paired_differences_and_resumes_only_missing_runs(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        cli_main(["compare", str(sweep_file)])
    assert not escaped, [str(w.message) for w in escaped]  # the runs' warnings stay in their run.log
    printed = capsys.readouterr().out
    assert "Model summary" not in printed and "| Name" not in printed  # per-run noise stays in run.log
    assert "4 runs (2 methods × 2 seeds), 0 already finished" in printed

    runs = read_runs(out)
    assert sorted(runs) == [("+ Label smoothing", 0), ("+ Label smoothing", 1), ("Baseline", 0), ("Baseline", 1)]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["metric"]) for r in rows] == [
        (method, metric.key) for method in ("Baseline", "+ Label smoothing") for metric in CLASSIFICATION_METRICS
    ]
    for row in rows:
        values = [float(runs[(row["method"], seed)][row["metric"]]) for seed in (0, 1)]
        assert float(row["mean"]) == pytest.approx(np.mean(values))
        assert float(row["std"]) == pytest.approx(np.std(values, ddof=1))
        if row["method"] == "Baseline":
            assert row["diff_to_baseline"] == ""
            continue
        # reference: the paired t-interval from the per-run numbers, written out here
        diffs = np.array(values) - np.array([float(runs[("Baseline", seed)][row["metric"]]) for seed in (0, 1)])
        half = stats.t.ppf(0.975, df=1) * diffs.std(ddof=1) / math.sqrt(2)  # t_{0.975, 1} = 12.706
        assert float(row["diff_to_baseline"]) == pytest.approx(diffs.mean())
        assert float(row["diff_ci95_low"]) == pytest.approx(diffs.mean() - half)
        assert float(row["diff_ci95_high"]) == pytest.approx(diffs.mean() + half)
    markdown = (out / "results.md").read_text()
    header = "| method | " + " | ".join(m.label for m in CLASSIFICATION_METRICS) + " |"
    assert header in markdown
    assert markdown.count("| Baseline |") == 1 and markdown.count("| + Label smoothing |") == 2  # mean row + Δ row
    assert (out / "figures.png").stat().st_size > 10_000

    # resume: delete one run's result, rerun: only that run is redone
    finished = {path: path.stat().st_mtime_ns for path in out.glob("runs/*/seed*/result.json")}
    assert len(finished) == 4
    removed = out / "runs" / "label_smoothing" / "seed1" / "result.json"
    removed.unlink()
    cli_main(["compare", str(sweep_file)])
    assert "4 runs (2 methods × 2 seeds), 3 already finished" in capsys.readouterr().out
    for path, mtime in finished.items():
        if path != removed:
            assert path.stat().st_mtime_ns == mtime
    assert json.loads(removed.read_text())["seed"] == 1
    assert read_runs(out)[("+ Label smoothing", 1)]["test/nll"] == runs[("+ Label smoothing", 1)]["test/nll"]


def test_paired_difference_matches_t_interval():
    values, base = [0.30, 0.25, 0.28, 0.22], [0.35, 0.31, 0.30, 0.29]
    mean, low, high = paired_difference(values, base)
    diffs = np.subtract(values, base)
    low_ref, high_ref = stats.t.interval(0.95, df=3, loc=diffs.mean(), scale=stats.sem(diffs))
    assert (mean, low, high) == pytest.approx((diffs.mean(), low_ref, high_ref))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"methods": []}, "non-empty list `methods`"),
        ({"methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}], "baseline": "b"}, "`baseline`"),
        ({"methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}], "seeds": []}, "`seeds`"),
        ({"methods": [{"name": "a", "config": "missing.yaml"}]}, "does not exist"),
        ({"methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}], "metrics": []}, "`metrics`"),
        ({"methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}], "metrics": [{"label": "x"}]}, "`key`"),
        (
            {
                "methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}],
                "metrics": [{"key": "test/bleu", "lower_is_better": "no"}],
            },
            "`lower_is_better` of metric 'test/bleu'",
        ),
        ({"methods": [{"name": "a", "config": "configs/digits/baseline.yaml"}], "test_ckpt_path": "x"}, "test_ckpt"),
    ],
)
def test_sweep_file_errors_name_the_field(spec, match, tmp_path):
    for entry in spec["methods"]:
        entry["config"] = str(REPO / entry["config"])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        Sweep.from_file(path)


def test_sweep_file_metrics_default_to_classification_and_take_defaults_per_field(tmp_path):
    methods = [{"name": "a", "config": str(REPO / "configs/digits/baseline.yaml")}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"methods": methods}))
    assert Sweep.from_file(path).metrics == list(CLASSIFICATION_METRICS)
    metrics = [{"key": "test/bleu", "label": "BLEU", "lower_is_better": False}, {"key": "test/ece", "scale": 100}]
    path.write_text(yaml.safe_dump({"methods": methods, "metrics": metrics, "test_ckpt_path": "best"}))
    sweep = Sweep.from_file(path)
    assert sweep.metrics == [Metric("test/bleu", "BLEU", 1.0, False), Metric("test/ece", "test/ece", 100.0, True)]
    assert sweep.test_ckpt_path == "best"


@pytest.mark.usefixtures("one_thread")
def test_toy_translation_sweep_tabulates_bleu_and_token_metrics_and_resumes(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_synthetic_parallel_corpus(corpus, num_train=64, num_valid=8, num_test=8, source_lang="en", target_lang="de")
    out = tmp_path / "out"
    argv = ["compare", str(TOY_TRANSLATION_SWEEP), "--output-dir", str(out), f"--data.init_args.data_dir={corpus}"]
    cli_main(argv)
    assert "2 runs (2 methods × 1 seeds), 0 already finished" in capsys.readouterr().out

    keys = ["test/bleu", "test/bleu_beam5", "test/nll", "test/ece", "test/top1_err", "test/aurc"]
    with open(out / "runs.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["method", "seed", *keys, "wall_s", "cpu_s"]
        assert [(row["method"], row["seed"]) for row in reader] == [("Baseline", "0"), ("+ Self-KD (token cache)", "0")]
    markdown = (out / "results.md").read_text()
    labels = ["BLEU greedy", "BLEU beam 5", "token NLL", "token ECE (%)", "token top-1 err (%)", "AURC (×10³)"]
    assert "| method | " + " | ".join(labels) + " |" in markdown
    assert "higher is better for BLEU greedy, BLEU beam 5, lower for the others" in markdown
    assert not (out / "figures.png").exists()  # a translator predicts hypotheses, not class probabilities
    results = sorted(out.glob("runs/*/seed0/result.json"))
    assert len(results) == 2
    assert all(json.loads(path.read_text())["test_ckpt_path"] == "best" for path in results)

    finished = {path: path.stat().st_mtime_ns for path in results}
    cli_main(argv)
    assert "2 runs (2 methods × 1 seeds), 2 already finished" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in results} == finished


def result_metrics(out: Path) -> dict[str, dict[str, float]]:
    return {
        str(path.relative_to(out)): json.loads(path.read_text())["metrics"] for path in out.glob("runs/*/*/result.json")
    }


@pytest.mark.usefixtures("one_thread")
def test_jobs_reproduce_in_process_runs_resume_and_report_failed_runs(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path)  # digits configs: deterministic: true
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    common = ["compare", str(sweep_file), "--seeds", "0", "--threads", "1"]
    cli_main([*common, "--output-dir", str(serial)])
    cli_main([*common, "--output-dir", str(parallel), "--jobs", "2"])
    printed = capsys.readouterr().out
    assert printed.count("2 runs (2 methods × 1 seeds), 0 already finished") == 2
    assert "1 per run, 2 runs at a time" in (parallel / "results.md").read_text()
    assert len(result_metrics(parallel)) == 2
    assert result_metrics(parallel) == result_metrics(serial)  # same seeds: the same numbers, exactly

    # resume with a third method whose config is broken: the finished run is kept, the deleted one is redone, the
    # broken one is reported with its log once the others have ended, and the command exits non-zero
    kept = parallel / "runs" / "baseline" / "seed0" / "result.json"
    redone = parallel / "runs" / "label_smoothing" / "seed0" / "result.json"
    kept_mtime = kept.stat().st_mtime_ns
    redone.unlink()
    config = yaml.safe_load((REPO / "configs/digits/baseline.yaml").read_text())
    config["trainer"]["max_epochs"] = "many"
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(config))
    sweep = yaml.safe_load(sweep_file.read_text())
    sweep["methods"].append({"name": "Broken", "config": str(tmp_path / "broken.yaml")})
    sweep_file.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exited:
        cli_main([*common, "--output-dir", str(parallel), "--jobs", "2"])
    assert exited.value.code == 1
    printed = capsys.readouterr().out
    assert "3 runs (3 methods × 1 seeds), 1 already finished" in printed
    log = parallel / "runs" / "broken" / "seed0" / "run.log"
    assert re.search(rf"run failed: Broken, seed 0: exit code [1-9]\d*; log: {re.escape(str(log))}\n", printed)
    assert "1 run(s) failed:\n  Broken, seed 0: exit code" in printed
    assert "max_epochs" in log.read_text()
    assert kept.stat().st_mtime_ns == kept_mtime
    assert result_metrics(parallel) == result_metrics(serial)


@pytest.mark.usefixtures("one_thread")
def test_temperature_scaling_adds_a_ts_row_from_the_same_runs_paired_with_the_baseline(tmp_path, capsys):
    sweep = yaml.safe_load(write_sweep(tmp_path).read_text())
    sweep["methods"] = [{**sweep["methods"][0], "temperature_scaling": True}]  # Baseline: FAST, validation off in fit
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "out"
    cli_main(["compare", str(sweep_file), "--threads", "1"])
    assert "2 runs (1 methods × 2 seeds), 0 already finished" in capsys.readouterr().out  # the TS row runs nothing

    records = {seed: json.loads((out / f"runs/baseline/seed{seed}/result.json").read_text()) for seed in (0, 1)}
    assert all(0.01 < r["metrics"]["test/temperature"] < 100 for r in records.values())
    runs = read_runs(out)
    assert sorted(runs) == [("Baseline", 0), ("Baseline", 1), ("Baseline + TS", 0), ("Baseline + TS", 1)]
    for (method, seed), row in runs.items():
        prefix = "test_ts/" if method == "Baseline + TS" else "test/"
        for metric in CLASSIFICATION_METRICS:
            assert float(row[metric.key]) == records[seed]["metrics"][prefix + metric.key.removeprefix("test/")]
    with open(out / "results.csv") as f:
        rows = {(r["method"], r["metric"]): r for r in csv.DictReader(f)}
    for metric in CLASSIFICATION_METRICS:
        value = {(method, seed): float(row[metric.key]) for (method, seed), row in runs.items()}
        diffs = [value[("Baseline + TS", seed)] - value[("Baseline", seed)] for seed in (0, 1)]
        assert float(rows[("Baseline + TS", metric.key)]["diff_to_baseline"]) == pytest.approx(np.mean(diffs))
    assert float(rows[("Baseline + TS", "test/top1_err")]["diff_to_baseline"]) == 0.0  # T > 0 keeps the arg-max
    markdown = (out / "results.md").read_text()
    assert markdown.count("| Baseline |") == 1 and markdown.count("| Baseline + TS |") == 2  # mean row + Δ row

    cli_main(["compare", str(sweep_file), "--threads", "1"])  # resume: the runs are finished, with their test_ts/
    assert "2 runs (1 methods × 2 seeds), 2 already finished" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("methods", "extra", "match"),
    [
        ([{"name": "a", "temperature_scaling": "yes"}], {}, "`temperature_scaling` of method 'a'"),
        ([{"name": "a", "temperature_scaling": True}, {"name": "a + TS"}], {}, "row names must be distinct"),
        ([{"name": "a", "temperature_scaling": True}], {"metrics": [{"key": "val/nll"}]}, r"\['val/nll'\] have none"),
        ([{"name": "a", "extra": 1}], {}, "optionally `temperature_scaling`"),
    ],
)
def test_sweep_file_temperature_scaling_errors(methods, extra, match, tmp_path):
    config = str(REPO / "configs/digits/baseline.yaml")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"methods": [{**m, "config": config} for m in methods], **extra}))
    with pytest.raises(ValueError, match=match):
        Sweep.from_file(path)


def test_sweep_file_temperature_scaling_rows_and_baseline(tmp_path):
    config = str(REPO / "configs/digits/baseline.yaml")
    methods = [{"name": "Baseline", "config": config, "temperature_scaling": True}, {"name": "+ LS", "config": config}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"methods": methods, "baseline": "Baseline + TS"}))
    sweep = Sweep.from_file(path)
    assert sweep.row_names == ["Baseline", "Baseline + TS", "+ LS"]
    assert sweep.baseline == "Baseline + TS"
    assert [m.temperature_scaling for m in sweep.methods] == [True, False]
