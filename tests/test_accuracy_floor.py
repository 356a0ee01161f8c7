"""Both methods tailor the shipped demo task into a smaller model that stays near its teacher.

Budget, margins and the repeated runs behind them: tests/accuracy_floor.py. Validation is what
a search selects on; test accuracy is only reported, and both must hold here.
"""

import pytest

from accuracy_floor import MARGINS, tailor, teacher_for


@pytest.fixture(scope="module")
def demo_task():
    prepared, teacher, reference = teacher_for(seed=0)
    # the teacher itself is a real fine-tuning of the shipped backbone, not a lucky split
    assert reference["val_accuracy"] >= 95.0 and reference["test_accuracy"] >= 95.0
    return prepared, teacher, reference


def _assert_near_teacher(method: str, metrics: dict, reference: dict) -> None:
    for split in ("val", "test"):
        gap = reference[f"{split}_accuracy"] - metrics[f"{split}_accuracy"]
        assert gap <= MARGINS[method][split], (
            f"{method} {split} accuracy {metrics[f'{split}_accuracy']:.2f}% is {gap:.2f} points below the "
            f"teacher's {reference[f'{split}_accuracy']:.2f}% (margin {MARGINS[method][split]})")


@pytest.mark.slow
def test_nettailor_is_smaller_and_within_its_margin_of_the_teacher(demo_task):
    prepared, teacher, reference = demo_task
    metrics = tailor("nettailor", prepared, teacher)
    _assert_near_teacher("nettailor", metrics, reference)
    assert metrics["blocks_kept"] <= metrics["blocks_total"] - 2  # blocks_removed=2 in the budget
    assert metrics["macs"] < 0.9 * reference["macs"] and metrics["params"] < reference["params"]
    assert metrics["task_params"] < 0.2 * reference["params"]  # what the task adds to the shared backbone


@pytest.mark.slow
def test_transtailor_is_smaller_and_within_its_margin_of_the_teacher(demo_task):
    prepared, teacher, reference = demo_task
    metrics = tailor("transtailor", prepared, teacher)
    _assert_near_teacher("transtailor", metrics, reference)
    chain = metrics["submodels"]
    assert [r["submodel"] for r in chain] == [0, 1, 2]
    assert chain[0]["macs"] == reference["macs"]  # W* is the whole network
    assert chain[2]["macs"] < 0.7 * reference["macs"]  # two steps of 20 % of W*'s MACs each
    assert metrics["macs"] == chain[metrics["chosen_submodel"]]["macs"]
