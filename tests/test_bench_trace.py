"""bench/trace.py reads what compare's runs left behind; its counts are checked on a hand-made
run folder whose answers are known, and on the rank correlation's edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _trial(tid: str, parent: str | None, acc: float, epochs: int = 3, mean: float | None = None,
           sigma: float | None = None, status: str = "ok") -> dict:
    pred = None if parent is None else {"mean": mean, "sigma": sigma, "ucb": None}
    return {"id": tid, "parent_id": parent, "status": status, "val_accuracy": acc if status == "ok" else None,
            "epochs": epochs, "seconds": 10.0 + int(tid), "n_params": 1000 * (int(tid) + 1), "prediction": pred}


def _run_folder(root: Path, name: str, trials: list[dict]) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "trials.jsonl").write_text("\n".join(json.dumps(t) for t in trials) + "\n")
    (folder / "summary.json").write_text(json.dumps({"searcher": name.rsplit("-", 1)[0], "test_accuracy": 0.9}))
    return folder


def test_describe_run_counts_lineage_incumbent_and_new_bests(tmp_path):
    from bench.trace import describe_run

    trials = [_trial("0", None, 0.80, epochs=6),
              _trial("1", "0", 0.82, mean=0.80, sigma=0.011),  # from incumbent 0, new best
              _trial("2", "0", 0.81, mean=0.81, sigma=0.01),   # not from incumbent (1 is best)
              _trial("3", "1", 0.85, mean=0.83, sigma=0.005),  # from incumbent 1, new best, outside 2 sigma
              _trial("4", "3", 0.0, status="failed"),          # ignored
              _trial("5", "2", 0.84, mean=0.84, sigma=0.01)]   # not from incumbent (3 is best)
    r = describe_run(_run_folder(tmp_path, "bayesian-1", trials))
    assert (r["method"], r["seed"], r["trials"], r["children"]) == ("bayesian", "1", 5, 4)
    assert r["new_best"] == 2 and r["from_incumbent"] == 2
    assert r["best_depth"] == 2 and r["best_epochs"] == 6 + 3 + 3 and r["best_params"] == 4000
    assert r["best_val"] == 0.85 and r["median_trial_s"] == 12.0
    assert r["covered"] == pytest.approx(3 / 4) and r["mae"] == pytest.approx((0.02 + 0 + 0.02 + 0) / 4)
    assert r["rho"] == pytest.approx(0.6)  # ranks (0,1,2,3) vs (1,0,3,2)


def test_searchers_without_a_model_have_no_gp_columns_and_report_renders(tmp_path):
    from bench.trace import describe_run, report

    trials = [_trial("0", None, 0.7), _trial("1", "0", 0.75), _trial("2", "1", 0.74)]
    r = describe_run(_run_folder(tmp_path, "random-0", trials))
    assert "rho" not in r and r["from_incumbent"] == 2 and r["new_best"] == 1
    text = report([r], "test")
    assert "| random | 3.0 |" in text and "| random | 0 | 3 | 1 | 2 | 1 | 6 | 0.7500 | 0.9000 | – |" in text


def test_spearman_edges():
    from bench.trace import spearman

    assert spearman([1, 2], [2, 1]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)


def test_main_refuses_a_folder_without_runs(tmp_path):
    from bench.trace import main

    with pytest.raises(SystemExit, match="No search run folders"):
        main([str(tmp_path)])
