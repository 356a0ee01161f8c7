"""A search's trials are read from the JSON files of their folders: broken folders give what
can be read, and no pickle in the folder is ever opened."""

import json

from hostile_pickle import plant
from raytailor.search.results import rows_from_trials
from raytailor.search.trial_folders import read_trials
from raytailor.spec import parse_spec


def _trial(experiment, name, *, params=None, lines=(), error=None, checkpoint=None):
    folder = experiment / name
    folder.mkdir(parents=True)
    if params is not None:
        (folder / "params.json").write_text(json.dumps(params))
    (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    if error is not None:
        (folder / "error.txt").write_text(error)
    if checkpoint is not None:
        (folder / "checkpoint_000000").mkdir()
        (folder / "checkpoint_000000" / "result.json").write_text(json.dumps(checkpoint))
    return folder


def test_trials_are_read_from_json_and_broken_folders_give_what_can_be_read(tmp_path):
    experiment = tmp_path / "trials"
    canary = tmp_path / "pwned"
    final = {"trial_id": "aaaa0001", "val_accuracy": 90.0, "test_accuracy": 89.0, "params": 10, "macs": 100,
             "task_params": 5, "feasible": True, "finished": True, "epochs": 3, "done": True, "timestamp": 2}
    done = _trial(experiment, "tailoring_trial_aaaa0001_1_skips=2_2026", params={"skips": 2},
                  lines=[json.dumps({"trial_id": "aaaa0001", "epochs": 1, "timestamp": 1}), json.dumps(final)],
                  checkpoint={"val_accuracy": 90.0})
    # killed mid-write: a cut line after a good one; an empty error.txt (a full disk)
    _trial(experiment, "tailoring_trial_bbbb0002_2_skips=1_2026", params={"skips": 1},
           lines=[json.dumps({"trial_id": "bbbb0002", "epochs": 1}), '{"trial_id": "bbbb0002", "ep'])
    _trial(experiment, "tailoring_trial_cccc0003_3_skips=3_2026", params={"skips": 3}, error="")
    _trial(experiment, "tailoring_trial_dddd0004_4_skips=4_2026", params={"skips": 4},
           error="Traceback ...\n\x1b[31mraytailor.errors.TailoringError: pruning removed every path\x1b[0m\n")
    # failed once, retried by Tune, then finished: TERMINATED; its final report never reached the
    # folder (a killed driver) but its checkpoint did: rebuilt from the checkpoint
    _trial(experiment, "tailoring_trial_eeee0005_5_skips=1_2026", params={"skips": 1},
           lines=[json.dumps({**final, "trial_id": "eeee0005", "val_accuracy": 88.0})],
           error="Failure # 1 (occurred at 2026-12-02)\nray.exceptions.ActorDiedError: killed\n")
    _trial(experiment, "tailoring_trial_ffff0006_6_skips=3_2026", params={"skips": 3},
           lines=[json.dumps({"trial_id": "ffff0006", "epochs": 2})],
           checkpoint={"val_accuracy": 80.0, "test_accuracy": 79.0, "params": 9, "macs": 90, "task_params": 4})
    # a full disk emptied the params.json of a finished trial (seen on a full-disk resume): its
    # reports carry the config
    _trial(experiment, "tailoring_trial_ffff0008_8_skips=2_2026", params=None,
           lines=[json.dumps({**final, "trial_id": "ffff0008", "config": {"skips": 2}})])
    (experiment / "tailoring_trial_ffff0008_8_skips=2_2026" / "params.json").write_text("")
    # a full disk cut its error.txt mid-traceback (seen on CI): the reason says so, not a frame line
    _trial(experiment, "tailoring_trial_ffff0007_7_skips=2_2026", params={"skips": 2},
           error='Failure # 1\nTraceback (most recent call last):\n  File "/ray/train/_internal/storage.py", line 119, in _pyar')
    (experiment / "driver_artifacts").mkdir()  # not a trial
    plant([experiment / "tuner.pkl", experiment / "searcher-state-x.pkl", done / "params.pkl",
           done / "error.pkl", done / "checkpoint_000000" / "state.pkl"], canary)

    records = read_trials(str(experiment))
    assert not canary.exists()
    assert [r.trial_id for r in records] == ["aaaa0001", "bbbb0002", "cccc0003", "dddd0004", "eeee0005", "ffff0006",
                                             "ffff0007", "ffff0008"]
    first, cut, empty, failed, retried, stale, truncated, emptied = records
    assert [r.failures for r in records] == [0, 0, 1, 1, 1, 0, 1, 0]
    assert emptied.config == {"skips": 2}
    assert first.config == {"skips": 2} and first.metrics == final and len(first.reports) == 2
    assert first.checkpoint == str(done / "checkpoint_000000")
    assert cut.metrics == {"trial_id": "bbbb0002", "epochs": 1} and cut.checkpoint is None
    assert empty.reports == [] and empty.error  # an empty error.txt still says the trial failed

    spec = parse_spec({"name": "x", "method": "nettailor", "backbone": {"arch": "resnet20"},
                       "data": {"dataset": "digits"}, "space": {"skips": {"choices": [1, 2, 3, 4]}}})
    rows, checkpoints = rows_from_trials(records, spec, accuracy_target=85.0)
    by_id = {r["trial_id"]: r for r in rows}
    assert by_id["aaaa0001"]["status"] == "TERMINATED" and by_id["aaaa0001"]["skips"] == 2
    assert by_id["bbbb0002"]["status"] == "INTERRUPTED" and by_id["bbbb0002"]["trained_epochs"] == 1
    assert by_id["cccc0003"]["status"] == "ERROR" and by_id["cccc0003"]["reason"]
    assert by_id["dddd0004"]["reason"] == "TailoringError: pruning removed every path"
    assert by_id["eeee0005"]["status"] == "TERMINATED" and by_id["eeee0005"]["val_accuracy"] == 88.0
    assert by_id["ffff0006"]["status"] == "TERMINATED" and by_id["ffff0006"]["macs"] == 90
    assert by_id["cccc0003"]["reason"] == "the trial failed and its error.txt is empty (a full disk?)"
    assert by_id["ffff0007"]["status"] == "ERROR"
    assert by_id["ffff0007"]["reason"] == "the trial failed and its error.txt is cut short (a full disk?)"
    assert not by_id["ffff0006"]["feasible"] and by_id["aaaa0001"]["feasible"]  # 80 < target 85 <= 90
    assert set(checkpoints) == {"aaaa0001", "ffff0006"}
    assert not canary.exists()
    assert read_trials(str(tmp_path / "nothing")) == []


def test_an_interrupted_trials_state_waits_for_the_trial_that_runs_its_values_again(tmp_path, monkeypatch):
    """resume keeps an interrupted trial's stage checkpoint under its values' key; the trial that
    runs the same values (as read back from params.json) finds it; a final checkpoint is not kept."""
    from ray import tune

    from raytailor.search import trainable
    from raytailor.search.trial_folders import keep_for_restart, remove_restarts
    from raytailor.stage_checkpoints import INDEX

    experiment = tmp_path / "trials"
    config = {"gamma1": 0.30000000000000004, "skips": 2, "theta": 1e-3}
    cut = _trial(experiment, "tailoring_trial_aaaa0001_1_x_2026", params=config)
    (cut / "checkpoint_000003").mkdir()
    (cut / "checkpoint_000003" / INDEX).write_text('{"stages": []}')
    (cut / "checkpoint_000003" / "stage_0.safetensors").write_bytes(b"weights")
    done = _trial(experiment, "tailoring_trial_bbbb0002_2_x_2026", params={"skips": 1},
                  checkpoint={"val_accuracy": 90.0})
    restarts = str(experiment / "restarts")
    for record in read_trials(str(experiment)):
        keep_for_restart(record, restarts, trainable.restart_key(record.config))
    kept = experiment / "restarts"
    assert [p.name for p in kept.iterdir()] == [trainable.restart_key(config)]
    assert done.exists() and [r.trial_id for r in read_trials(str(experiment))] == ["aaaa0001", "bbbb0002"]

    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)  # a new trial, not a retry
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir(), other.mkdir()
    trainable._restore(mine, dict(config), restarts)
    assert (mine / "stage_0.safetensors").read_bytes() == b"weights"
    trainable._restore(other, {**config, "skips": 1}, restarts)
    assert list(other.iterdir()) == []
    remove_restarts(restarts)
    assert not kept.exists()
