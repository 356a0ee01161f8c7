"""Both methods tailor the shipped demo task into a smaller model that stays near its teacher.

Budget, margins and the repeated runs behind them: tests/accuracy_floor.py. Validation is what
a search selects on; test accuracy is only reported, and both must hold here.
"""

import pytest

from accuracy_floor import BF16_MARGIN, MARGINS, tailor, teacher_for


@pytest.fixture(scope="module")
def demo_task():
    prepared, teacher, reference = teacher_for(seed=0)
    # the teacher itself is a real fine-tuning of the shipped backbone, not a lucky split
    assert reference["val_accuracy"] >= 95.0 and reference["test_accuracy"] >= 95.0
    return prepared, teacher, reference


@pytest.fixture(scope="module")
def nettailor_fp32(demo_task):
    prepared, teacher, _ = demo_task
    return tailor("nettailor", prepared, teacher)


@pytest.fixture(scope="module")
def transtailor_fp32(demo_task):
    prepared, teacher, _ = demo_task
    return tailor("transtailor", prepared, teacher)


def _assert_near_teacher(method: str, metrics: dict, reference: dict) -> None:
    for split in ("val", "test"):
        gap = reference[f"{split}_accuracy"] - metrics[f"{split}_accuracy"]
        assert gap <= MARGINS[method][split], (
            f"{method} {split} accuracy {metrics[f'{split}_accuracy']:.2f}% is {gap:.2f} points below the "
            f"teacher's {reference[f'{split}_accuracy']:.2f}% (margin {MARGINS[method][split]})")


@pytest.mark.slow
def test_nettailor_is_smaller_and_within_its_margin_of_the_teacher(demo_task, nettailor_fp32):
    _, _, reference = demo_task
    metrics = nettailor_fp32
    _assert_near_teacher("nettailor", metrics, reference)
    assert metrics["blocks_kept"] <= metrics["blocks_total"] - 2  # blocks_removed=2 in the budget
    assert metrics["macs"] < 0.9 * reference["macs"] and metrics["params"] < reference["params"]
    assert metrics["task_params"] < 0.2 * reference["params"]  # what the task adds to the shared backbone


@pytest.mark.slow
def test_transtailor_is_smaller_and_within_its_margin_of_the_teacher(demo_task, transtailor_fp32):
    _, _, reference = demo_task
    metrics = transtailor_fp32
    _assert_near_teacher("transtailor", metrics, reference)
    chain = metrics["submodels"]
    assert [r["submodel"] for r in chain] == [0, 1, 2]
    assert chain[0]["macs"] == reference["macs"]  # W* is the whole network
    assert chain[2]["macs"] < 0.7 * reference["macs"]  # two steps of 20 % of W*'s MACs each
    assert metrics["macs"] == chain[metrics["chosen_submodel"]]["macs"]


@pytest.mark.slow
def test_bf16_lands_within_a_point_and_a_half_of_fp32(demo_task, nettailor_fp32, transtailor_fp32):
    """``precision: bf16`` (every stage's forward passes under bf16 autocast): the teacher and
    both methods' models trained that way land no more than BF16_MARGIN points below the same
    runs in fp32 (test split, and the teacher's val; see accuracy_floor.BF16_MARGIN). A bf16
    run whose weights stopped learning (autocast reusing a stage's first casts) lands tens of
    points below."""
    _, _, reference = demo_task
    prepared, teacher, bf16_reference = teacher_for(seed=0, precision="bf16")
    assert prepared.precision == "bf16"
    bf16 = tailor("nettailor", prepared, teacher)
    bf16_transtailor = tailor("transtailor", prepared, teacher)
    checks = [("teacher val", reference["val_accuracy"], bf16_reference["val_accuracy"]),
              ("teacher test", reference["test_accuracy"], bf16_reference["test_accuracy"]),
              ("nettailor test", nettailor_fp32["test_accuracy"], bf16["test_accuracy"]),
              ("transtailor test", transtailor_fp32["test_accuracy"], bf16_transtailor["test_accuracy"])]
    for name, fp32_accuracy, bf16_accuracy in checks:
        assert bf16_accuracy >= fp32_accuracy - BF16_MARGIN, (
            f"{name}: bf16 {bf16_accuracy:.2f}% against fp32 {fp32_accuracy:.2f}%")
    assert bf16["macs"] < 0.9 * reference["macs"]
