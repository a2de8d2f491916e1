"""bench.large's seeds in more than one sitting: the --seeds forms and --add-to's check."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.large import earlier_results, seed_list


def test_seeds_are_a_count_or_a_list():
    assert seed_list("3") == [0, 1, 2]
    assert seed_list("1,2") == [1, 2]
    for bad in ("x", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"received {bad!r}"):
            seed_list(bad)


def test_add_to_takes_an_earlier_run_of_the_same_benchmark_only(tmp_path):
    data, test = tmp_path / "train.zip", tmp_path / "test.zip"
    earlier = tmp_path / "large.json"
    earlier.write_text(json.dumps({"budget_s": 600.0, "data": str(data), "test": str(test), "fidelities": None,
                                   "results": [{"seed": 0, "test_accuracy": 0.9}]}))
    same = argparse.Namespace(data=str(data), test=str(test), budget=600.0, fidelities=None, recipe=None, levers=None)
    assert [r["seed"] for r in earlier_results(earlier, same)] == [0]
    other = argparse.Namespace(**{**vars(same), "budget": 270.0})
    with pytest.raises(SystemExit, match="expected a run of .*600 s.*received .*600 s"):
        earlier_results(earlier, argparse.Namespace(**{**vars(same), "fidelities": [0.25, 1.0]}))
    with pytest.raises(SystemExit, match="270 s"):
        earlier_results(earlier, other)
