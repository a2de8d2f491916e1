"""bench/inheritance.py's core on tiny data: the child starts at its parent's accuracy and
the result carries what the report's table needs."""

from __future__ import annotations

import pytest

from tests.digits import digits_16px


def _tiny() -> dict:
    from engine.data.dataset import stratified_split

    x, y = digits_16px(0)
    x, y = x[:600, ::2, ::2], y[:600]  # back to the original 8x8 digits: one conv block, fast
    s = stratified_split(y, test=0.15, val=0.15, seed=0)
    return {"name": "digits 8x8", "x_train": x[s.train], "y_train": y[s.train], "x_val": x[s.val],
            "y_val": y[s.val], "class_names": [str(i) for i in range(10)]}


@pytest.mark.slow
def test_run_seed_preserves_function_and_reports_the_table_fields():
    from bench import inheritance

    run = inheritance.run_seed(_tiny(), seed=0, parent_epochs=1, max_epochs=2, kinds=["add_skip"], reference=False)
    assert run["parent_epochs"] == 1 and run["max_epochs"] == 2 and 0.0 <= run["parent_val_accuracy"] <= 1.0
    (row,) = run["rows"]
    assert set(inheritance.ROW_FIELDS) <= set(row)
    assert row["kind"] == "add_skip" and row["operation"].startswith("add skip (sum)")
    assert abs(row["child_val_accuracy_before"] - row["parent_val_accuracy"]) < 1e-6
    assert abs(row["difference_points"]) < 1e-4 and row["max_softmax_difference"] < 1e-4
    assert len(row["inherited_curve"]) == len(row["scratch_curve"]) == 2
    for key in ("epochs_to_parent_inherited", "epochs_to_parent_scratch"):
        assert row[key] is None or 1 <= row[key] <= 2
    text = inheritance.report([run | {"seconds": 1.0}], "digits 8x8", ["- Machine: test"])
    assert "| add_skip |" in text and "Verdict" in text


def test_epochs_to_and_make_child_parts():
    from bench import inheritance
    from engine.nas.architecture import seed_architecture

    assert inheritance.epochs_to([0.5, 0.7, 0.9], 0.7) == 2
    assert inheritance.epochs_to([0.5, 0.6], 0.7) is None
    parent = seed_architecture((16, 16, 1), 10)
    for key in ("deeper-conv", "deeper-dense", "wider-conv", "wider-dense"):
        op = inheritance.make_child(parent, key, seed=0).operations[-1]
        part = op.get("part", op.get("kind"))
        assert part == key.split("-")[1], (key, op)


@pytest.mark.slow
def test_one_step_measures_parent_and_children_after_the_same_step():
    from bench import inheritance_step as step

    kinds = [("deeper-conv", "zero"), ("wider-conv", "split")]
    run = step.run_seed(_tiny(), seed=0, parent_epochs=1, kinds=kinds)
    assert [(r["kind"], r["wider"]) for r in run["rows"]] == kinds
    for row in run["rows"]:
        assert abs(row["before"] - run["parent_val_accuracy"]) < 1e-6  # the morphism keeps the function
        assert 0.0 <= row["after_step"] <= 1.0
        assert row["vs_parent"] == pytest.approx(100 * (row["after_step"] - run["parent_val_accuracy"]))
        assert row["vs_parent_step"] == pytest.approx(100 * (row["after_step"] - run["parent_after_step"]))
    assert "split outgoing" in run["rows"][1]["label"]
    text = step.report([run], "digits 8x8", ["- Machine: test"])
    assert "Verdict" in text and text.count("| 0 |") == 2
