"""Real searches on Ray Tune: outputs, interrupt + resume, multi-node, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pyarrow.parquet as pq
import pytest
import yaml

import raytailor
from hostile_pickle import plant
from raytailor.cli import main
from raytailor.cost import count_params
from raytailor.search.searcher import journal_storage

TINY = {
    "name": "tiny-search",
    "method": "nettailor",
    "backbone": {"arch": "resnet20", "weights": "asset:resnet20_shapes16.safetensors"},
    "data": {"dataset": "digits", "image_size": 16, "num_classes": 4, "samples_per_class": 50,
             "val_fraction": 0.2, "test_fraction": 0.2, "seed": 1},
    "teacher": {"epochs": 2, "lr": 0.05, "batch_size": 32},
    "target": {"max_drop": 100.0},  # mechanics under test; the constraint has its own unit test
    "search": {"trials": 4, "max_concurrent": 1, "sampler": "tpe", "seed": 0, "resources": {"cpu": 1}},
    "space": {"skips": {"choices": [1, 2], "default": 2},
              "blocks_removed": {"low": 0, "high": 4, "default": 2},
              "gamma1": {"low": 0.1, "high": 1.0, "log": True, "default": 0.3, "when": {"skips": 2}}},
    # one student, many prunings: each trial also prunes its student with K = 0 and K = 4
    "fixed": {"student_epochs": 1, "finetune_epochs": 1, "batch_size": 32, "theta": 0.01, "gamma2": 3.0,
              "prune_blocks": [0, 4]},
    "device": "cpu",
}


# A search takes about a minute here; a loaded 2-core CI machine can take several times that.
# The limits only stop a hung process: they are never what a passing run depends on.
SEARCH_TIMEOUT = 1800
COMMAND_TIMEOUT = 600


def _cli(*args, env, timeout=SEARCH_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "raytailor.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _finished_in_journal(journal: Path) -> int:
    """Trials the search has finished and told Optuna (0 while the study does not exist yet)."""
    if not journal.is_file():
        return 0
    try:
        study = optuna.load_study(study_name=None, storage=journal_storage(journal))
    except (KeyError, ValueError, RuntimeError):
        return 0
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


# Where no Ray runs: a search that joined the instance RAY_ADDRESS names (Ray's default when
# ray.init() gets no address) would fail to connect. Every search below must start its own.
NOWHERE = "127.0.0.1:9"


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory) -> Path:
    """One teacher cache for every search here: a teacher is trained once per distinct spec (the
    cache is keyed by all that trains it), not once per test, and the first test to need each one
    trains it as a Ray task as a user's first search does."""
    return tmp_path_factory.mktemp("teacher-cache")


@pytest.fixture
def env(teacher_cache):
    return {**os.environ, "RAYTAILOR_CACHE": str(teacher_cache), "RAY_AIR_NEW_OUTPUT": "1",
            "RAY_ADDRESS": NOWHERE}


def log_text(handle) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read()[-3000:]


def _tensorboard_hparam_keys(trial_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(trial_dir))
    events.Reload()
    scalars = events.Tags()["scalars"]
    trained_a_student = "student/loss" in (trial_dir / "result.json").read_text()
    assert any(tag.startswith("student/") for tag in scalars) == trained_a_student
    assert not any(t.startswith("ray/") for t in scalars)
    assert not {"done", "time_this_iter_s", "iterations_since_restore", "training_iteration"} & set(scalars)
    keys, metrics = [], []
    for data in events.PluginTagToContent("hparams").values():
        parsed = plugin_data_pb2.HParamsPluginData.FromString(data)
        if parsed.HasField("session_start_info"):
            keys = sorted(parsed.session_start_info.hparams)
        if parsed.HasField("experiment"):
            metrics = [m.name.tag for m in parsed.experiment.metric_infos]
    # the run's own metrics, objectives and feasible first; no Ray bookkeeping
    assert metrics[:3] == ["val_accuracy", "macs", "feasible"] and "done" not in metrics, metrics
    return keys


def _trial_lines(out: Path, trial_id: str) -> int:
    (folder,) = [p for p in (out / "trials").iterdir() if trial_id in p.name]
    return len((folder / "result.json").read_text().splitlines())


def _start_search(spec: dict, tmp_path: Path, env, *, session: bool = False) -> tuple[subprocess.Popen, Any, Path]:
    """A search of ``spec`` running in the background: (process, its log file, its folder).
    ``session``: in a process group of its own (with the Ray instance it starts)."""
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "search"
    log = open(tmp_path / "search.log", "w+")  # files, not pipes: the progress output is long
    process = subprocess.Popen([sys.executable, "-m", "raytailor.cli", "search", str(path), "--out", str(out)],
                               stdout=log, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=session)
    return process, log, out


@pytest.mark.slow
def test_a_search_whose_machine_dies_resumes_without_losing_finished_or_checkpointed_work(tmp_path, env):
    """SIGKILL of the driver and its whole Ray instance (a lost machine), mid-trial and after a
    trial finished: resume keeps the finished trial as the study recorded it, continues the cut
    trial from its checkpoint, and runs exactly the trials left."""
    spec = {**TINY, "name": "machine", "search": {**TINY["search"], "trials": 3, "early_stopping": "none"},
            "fixed": {**TINY["fixed"], "student_epochs": 3}}
    process, log, out = _start_search(spec, tmp_path, env, session=True)
    deadline = time.time() + SEARCH_TIMEOUT

    def checkpointed_after_a_finish() -> bool:
        if not _finished_in_journal(out / "optuna.journal"):
            return False
        study = optuna.load_study(study_name=None, storage=journal_storage(out / "optuna.journal"))
        running = [t.user_attrs.get("ray_trial_id") for t in study.trials
                   if t.state == optuna.trial.TrialState.RUNNING]
        return any(list(out.glob(f"trials/*{ray_id}*/checkpoint_*")) for ray_id in running if ray_id)

    while time.time() < deadline and process.poll() is None and not checkpointed_after_a_finish():
        time.sleep(0.3)
    assert process.poll() is None, "the search ended before the machine died:\n" + log_text(log)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=COMMAND_TIMEOUT)
    study = optuna.load_study(study_name=None, storage=journal_storage(out / "optuna.journal"))
    told = {t.user_attrs["ray_trial_id"]: t.values for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE and "submodel" not in t.user_attrs}
    assert told

    done = _cli("resume", str(out), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(rows) == 3 and all(r["status"] == "TERMINATED" for r in rows), rows
    by_id = {r["trial_id"]: r for r in rows}
    submodels = pq.read_table(out / "submodels.parquet").to_pylist()
    for ray_id, values in told.items():  # kept, with what the study was told (its sampled pruning's)
        assert by_id[ray_id]["status"] == "TERMINATED"
        assert values in [[r["val_accuracy"], r["macs"]] for r in submodels if r["trial_id"].startswith(f"{ray_id}-it")]
    study = optuna.load_study(study_name=None, storage=journal_storage(out / "optuna.journal"))
    sampled = [t for t in study.trials if "submodel" not in t.user_attrs]
    assert len(sampled) == 3 and all(t.state.is_finished() for t in study.trials)
    # A trial the killed driver had started but not yet recorded in Tune's experiment state leaves
    # a folder with params.json and an empty result.json; resume samples its slot afresh (the
    # table above has exactly 3 rows), so such a folder reports nothing and is not looked at here.
    reports = [[json.loads(line) for line in (p / "result.json").read_text().splitlines()]
               for p in (out / "trials").iterdir() if (p / "result.json").is_file()]
    continued = [r for r in reports if r and r[0].get("restored_epochs", 0) > 0]
    assert continued, "no trial continued from the checkpoint of the one cut short"


# Early stopping that is bound to stop trials, by both rules. Accuracy is the only objective, so
# a trial whose (pruned student's) validation accuracy after its first epoch is below an earlier
# trial's is dominated, and with reduction_factor 100 only the best of a rung is safe. The
# target is the teacher's own accuracy (max_drop 0), so once one trial has finished, a trial
# whose first-epoch accuracy plus that trial's gain is below the teacher's is stopped too: many
# prunings sit at chance (25 %) after one epoch. Every later trial would have to be at least as
# good as all before it, and close to the teacher, for no stop at all.
STOPPING = {
    **TINY, "name": "stopping", "objectives": ["accuracy"], "target": {"max_drop": 0.0},
    "search": {**TINY["search"], "trials": 6,
               "early_stopping": {"grace_epochs": 1, "reduction_factor": 100, "min_finished": 1, "slack": 0.0}},
    "fixed": {"student_epochs": 2, "finetune_epochs": 1, "batch_size": 32, "theta": 0.01, "gamma2": 3.0},
}


def _stops(out: Path) -> dict:
    record = out / "early_stopping.json"
    return json.loads(record.read_text())["stopped"] if record.is_file() else {}


@pytest.mark.slow
def test_early_stopping_decisions_survive_an_interrupt_and_reach_every_output(tmp_path, env):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    process, log, out = _start_search(STOPPING, tmp_path, env)
    deadline = time.time() + SEARCH_TIMEOUT
    while time.time() < deadline and process.poll() is None and not (
            _stops(out) and _finished_in_journal(out / "optuna.journal") >= 2):
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before a trial was stopped and recorded:\n" + log_text(log)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=COMMAND_TIMEOUT)
    before = json.loads((out / "early_stopping.json").read_text())
    stopped_before = before["stopped"]
    lines_before = {tid: _trial_lines(out, tid) for tid in stopped_before}

    done = _cli("resume", str(out), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads((out / "early_stopping.json").read_text())
    rows = {r["trial_id"]: r for r in pq.read_table(out / "trials.parquet").to_pylist()}
    assert len(rows) == 6 and all(r["status"] in ("TERMINATED", "STOPPED", "ERROR") for r in rows.values())
    # decisions taken before the interrupt are kept: still stopped, same reason, not run again
    for trial_id, stop in stopped_before.items():
        assert after["stopped"][trial_id] == stop
        assert rows[trial_id]["status"] == "STOPPED" and rows[trial_id]["reason"] == stop["reason"]
        assert _trial_lines(out, trial_id) == lines_before[trial_id]
    ended = set(before["finished"]) | set(stopped_before)  # trials that ended before the interrupt
    for rung, points in before["rungs"].items():  # their estimates stay; only re-run trials' are redone
        assert all(after["rungs"][rung][t] == p for t, p in points.items() if t in ended)
    assert before["finished"].items() <= after["finished"].items()

    stopped = {t: r for t, r in rows.items() if r["status"] == "STOPPED"}
    assert set(stopped) == set(after["stopped"])
    finished_epochs = {r["trained_epochs"] for r in rows.values() if r["status"] == "TERMINATED"}
    assert finished_epochs == {3}  # student 2 + fine-tune 1
    for trial_id, row in stopped.items():
        assert "stopped at epoch 1" in row["reason"] and row["trained_epochs"] == 1
        assert row["val_accuracy"] is not None and row["test_accuracy"] is None
        assert not row["feasible"] and not row["on_front"] and not row["chosen"]
        assert not (out / "models" / trial_id).exists() and not (out / "models" / f"{trial_id}-it0").exists()
        (folder,) = [p for p in (out / "trials").iterdir() if trial_id in p.name]
        events = EventAccumulator(str(folder))
        events.Reload()
        assert [e.value for e in events.Scalars("early_stopping/stopped_at_epoch")] == [1.0]
    # Optuna: every stopped trial PRUNED, none left RUNNING; the summary counts them
    states = [t.state for t in _study(out).trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped) >= 1
    assert all(state.is_finished() for state in states)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == len(stopped) and summary["unfinished"] == 0
    assert summary["trained_epochs"] == sum(r["trained_epochs"] for r in rows.values())


BUDGETED = {
    **TINY, "name": "budgeted",
    "search": {**TINY["search"], "early_stopping": "none", "budget_epochs": 10},  # 4 trials, one at a time
    "space": {"skips": TINY["space"]["skips"]},
    # a trial spends 4 epochs at the least (student 2, a fine-tune 2) and here 6: its student
    # is pruned with K = 0 and K = 2, and both prunings are fine-tuned
    "fixed": {"student_epochs": 2, "finetune_epochs": 2, "batch_size": 32, "theta": 0.01, "gamma2": 3.0,
              "blocks_removed": 0, "prune_blocks": [2]},
}


@pytest.mark.slow
def test_a_spent_budget_ends_the_running_trial_with_what_it_has_starts_no_other_and_stays_spent_on_resume(
        tmp_path, env):
    """6 epochs a trial (4 at the least), one at a time, budget 10: the first trial finishes (6);
    the second starts, as its 4 fit in the 4 left, and its first fine-tune ends on the epoch that
    spends the budget (10). It ends with that pruning, not stopped with nothing: before the
    second pruning, or after that one's first epoch (11) if the bulletin's post came late. No
    third starts. A resume counts what the kept trials spent: it runs nothing."""
    out = tmp_path / "out"
    done = _search(BUDGETED, out, env)
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["TERMINATED", "TERMINATED"], rows
    (whole,), (cut,) = [[r for r in rows if (r["reason"] is None) == first] for first in (True, False)]
    assert whole["trained_epochs"] == 6
    assert cut["trained_epochs"] in (4, 5), cut  # its own: the search's 10th or 11th
    assert cut["reason"] == "ended with the sub-models it had ready: the search's budget was spent"
    assert cut["test_accuracy"] is not None and cut["submodel"] == 0  # its first pruning, measured
    submodels = pq.read_table(out / "submodels.parquet").to_pylist()
    assert len([r for r in submodels if r["trial_id"].startswith(cut["trial_id"])]) == 1  # nothing else
    (folder,) = [p for p in (out / "trials").iterdir() if cut["trial_id"] in p.name]
    final = json.loads((folder / "result.json").read_text().splitlines()[-1])
    assert final["cut_short"] is True and final["finished"] is True
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    assert any(tag.startswith("budget/cut_short") for tag in events.Tags()["tensors"])  # TensorBoard says why
    summary = json.loads((out / "summary.json").read_text())
    spent = 6 + cut["trained_epochs"]
    assert (summary["trained_epochs"], summary["budget_epochs"], summary["budget_spent"]) == (spent, 10, True)
    assert summary["unfinished"] == 0 and summary["stopped"] == 0 and summary["cut_short"] == 1
    assert (f"the budget of 10 training epochs ended the search after 2 of 4 trials ({spent} spent; a trial needs "
            "at least 4); 1 ended with the models it had ready") in done.stderr
    # 40 validation images (TINY): how finely they judge the target, before the trials
    assert "[search] accuracy target" in done.stderr and "40 validation images: one is 2.50 points" in done.stderr
    # both told to Optuna as complete: the second ended with a model
    assert [t.state for t in _study(out).trials] == [optuna.trial.TrialState.COMPLETE] * 2

    resumed = _cli("resume", str(out), env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert pq.read_table(out / "trials.parquet").to_pylist() == rows
    assert len(_study(out).trials) == 2


def _trial_workers() -> list[int]:
    """PIDs of the Ray worker processes running a trial (Tune's function trainable actor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ImplicitFunc" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_trial_whose_worker_is_killed_continues_from_its_checkpoint_to_the_same_result(tmp_path, env):
    """SIGKILL of a worker mid-student: the trial runs again from its last stage checkpoint
    (search.max_failures), never repeats an epoch it had reported, and ends with exactly the
    metrics of its twin (the same values, never interrupted); the search exits 0."""
    spec = {**TINY, "name": "killed", "space": {"skips": {"choices": [2]}},
            "search": {**TINY["search"], "trials": 2, "max_concurrent": 2, "early_stopping": "none"},
            "fixed": {**{k: v for k, v in TINY["fixed"].items() if k != "prune_blocks"}, "student_epochs": 4}}
    process, log, out = _start_search(spec, tmp_path, env)
    deadline, killed = time.time() + SEARCH_TIMEOUT, None
    while time.time() < deadline and process.poll() is None and killed is None:
        for result in (out / "trials").glob("*/result.json") if (out / "trials").is_dir() else []:
            lines = result.read_text().splitlines()
            reported = json.loads(lines[-1]) if lines else {}
            # the worker of a trial that has reported (and checkpointed) a student epoch, mid-student
            if "student/loss" in reported and reported.get("stage_epoch", 9) < 4 and reported["pid"] in _trial_workers():
                killed = reported["pid"]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    assert killed is not None, "the trial was never seen running:\n" + log_text(log)
    assert process.wait(timeout=SEARCH_TIMEOUT) == 0, log_text(log)
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["TERMINATED"] * 2 and all(r["trained_epochs"] == 5 for r in rows)
    keys = ("val_accuracy", "test_accuracy", "macs", "params")
    assert {k: rows[0][k] for k in keys} == {k: rows[1][k] for k in keys}
    folders = [p for p in (out / "trials").iterdir() if (p / "params.json").is_file()]
    assert sum((p / "error.txt").is_file() for p in folders) == 1  # one of them died once
    for folder in folders:
        reports = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [r["stage_epoch"] for r in reports if "student/loss" in r] == [1, 2, 3, 4]
    assert killed not in _trial_workers()


@pytest.mark.slow
def test_trials_spread_over_nodes_and_share_one_copy_per_node(tmp_path, monkeypatch, teacher_cache):
    """A two-task search on a head and two workers: trials of both tasks run on both workers, and
    each worker's object store received the tasks' shared data once, with the frozen backbone
    both tasks use once: fewer bytes than the two tasks would take each with its own backbone."""
    import ray
    from ray._private.internal_api import node_stats
    from ray.cluster_utils import Cluster

    from raytailor.search import run_search
    from raytailor.spec import parse_multitask_spec

    monkeypatch.setenv("RAYTAILOR_CACHE", str(teacher_cache))
    one_pruning = {k: v for k, v in TINY["fixed"].items() if k != "prune_blocks"}  # placement under test
    spec = parse_multitask_spec({**TWO_TASKS, "search": {**TINY["search"], "trials": 3, "max_concurrent": 2,
                                                         "early_stopping": "none"}, "fixed": one_pruning})
    from raytailor.search.prepare import _train_teacher
    from raytailor.search.teacher_cache import load_teacher, store_teacher, teacher_key

    for task_spec in spec.tasks.values():  # cached beforehand: no teacher's result in a worker's store
        if load_teacher(teacher_key(task_spec)) is None:
            store_teacher(teacher_key(task_spec), *_train_teacher(task_spec))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    out = tmp_path / "search"
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        run_search(spec, out, address=cluster.address, verbose=False)
        totals = json.loads((out / "summary.json").read_text())["totals"]
        together, separate = totals["object_store_bytes"], totals["separate_bytes"]
        results = [json.loads(line) for p in (out / "trials").iterdir() if p.is_dir()
                   for line in (p / "result.json").read_text().splitlines()]
        finals = [r for r in results if r.get("done")]
        assert len(finals) == 6
        per_node = {}
        for r in finals:
            per_node[r["node_id"]] = per_node.get(r["node_id"], 0) + 1
        worker_ids = {w.node_id for w in workers}
        assert set(per_node) == worker_ids and max(per_node.values()) >= 3
        for node in ray.nodes():
            if node["NodeID"] in worker_ids:
                stats = node_stats(node["NodeManagerAddress"], node["NodeManagerPort"]).store_stats
                # >= 3 trials ran here; a copy per trial would be >= 3x. One copy (+ small results),
                # and at least one: the trials here read the shared tasks from this node's store,
                # the backbone once for both tasks
                assert together <= stats.cumulative_created_bytes < separate, (stats, together, separate)
        for task in ("four", "three"):
            rows = pq.read_table(out / task / "trials.parquet").to_pylist()
            assert len(rows) == 3 and all(r["status"] == "TERMINATED" for r in rows)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_bad_search_input_is_one_line_exit_2(tmp_path, capfd, monkeypatch):
    """Run by ``main`` in this process (tests/test_cli.py checks the real entry point's exit code)."""
    monkeypatch.chdir(tmp_path)  # a search without --out would write under runs/ here

    def refused(*args) -> str:
        capfd.readouterr()
        assert main(list(args)) == 2
        err = capfd.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("raytailor: error: "), err
        return err

    spec = tmp_path / "empty.yaml"
    spec.write_text(yaml.safe_dump({**TINY, "space": {}}))
    assert "space is empty" in refused("search", str(spec), "--out", str(tmp_path / "o"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "target": {"max_drop": -1}}))
    assert "max_drop must be >= 0" in refused("search", str(bad))
    refused("resume", str(tmp_path / "nothing"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "empty.yaml"]


TINY_TRANSTAILOR = {
    **TINY, "name": "tiny-transtailor-search", "method": "transtailor",
    "search": {**TINY["search"], "trials": 2},
    "space": {"prune_fraction": {"low": 0.1, "high": 0.3, "default": 0.2}},
    # no classifier epochs: each W* keeps an untrained classifier (chance accuracy), so the
    # fine-tuned sub-models of its chain dominate it: every trial has a sub-model it does not keep
    "fixed": {"tau": 100.0, "max_iterations": 2, "classifier_epochs": 0, "factor_epochs": 1,
              "finetune_epochs": 1, "classifier_lr": 0.05, "batch_size": 32},
}


@pytest.mark.slow
def test_transtailor_search_puts_every_submodel_on_the_table(tmp_path, env, capsys):
    """Each trial's whole chain (W*, it1, it2) is a row; the front and its exported models are
    drawn from all of them, and a kept sub-model that was not chosen exports by its id."""
    spec = tmp_path / "tt.yaml"
    spec.write_text(yaml.safe_dump(TINY_TRANSTAILOR))
    out = tmp_path / "search"
    with open(tmp_path / "search.log", "w+") as log:
        done = subprocess.run([sys.executable, "-m", "raytailor.cli", "search", str(spec), "--out", str(out)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=SEARCH_TIMEOUT)
        assert done.returncode == 0, log_text(log)
    trials = pq.read_table(out / "trials.parquet").to_pylist()  # one row per trial: its chosen sub-model
    rows = pq.read_table(out / "submodels.parquet").to_pylist()  # one row per sub-model
    assert len(trials) == 2 and all(t["submodel"] == 2 and t["chosen"] for t in trials)
    assert len(rows) == 6 and [r["submodel"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert sum(r["chosen"] for r in rows) == 2 and all(r["chosen"] == (r["submodel"] == 2) for r in rows)
    for trial in trials:
        chosen = next(r for r in rows if r["trial_id"] == f"{trial['trial_id']}-it2")
        assert {k: trial[k] for k in ("val_accuracy", "macs", "params", "on_front")} == {
            k: chosen[k] for k in ("val_accuracy", "macs", "params", "on_front")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == summary["completed"] == 2 and summary["models"] == 6
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial_dir = next(p for p in (out / "trials").iterdir() if p.is_dir())
    events = EventAccumulator(str(trial_dir))
    events.Reload()  # the chain as a curve: one step per sub-model
    assert len(events.Scalars("submodels/macs")) == 3
    w_star = [r for r in rows if r["submodel"] == 0]
    assert all(r["macs"] == w_star[0]["macs"] for r in w_star)  # W* is the unpruned network
    front = pq.read_table(out / "pareto.parquet").to_pylist()
    assert front and {r["trial_id"] for r in front} <= {r["trial_id"] for r in rows}
    for row in front:
        model = raytailor.load_tailored(out / "models" / row["trial_id"])
        assert count_params(model) == row["params"]
        result = json.loads((out / "models" / row["trial_id"] / "result.json").read_text())
        assert result["submodel"] == row["submodel"] and result["macs"] == row["macs"]
    # every sub-model exports exactly when its trial kept it: the chosen one, and any other that
    # no later (leaner) sub-model of its chain matches in accuracy; the rest are said plainly
    from raytailor.cli import main

    def kept(r):
        later = [o for o in rows if o["trial_id"].rsplit("-it", 1)[0] == r["trial_id"].rsplit("-it", 1)[0]
                 and o["submodel"] > r["submodel"]]
        return r["chosen"] or not any(o["val_accuracy"] >= r["val_accuracy"] for o in later)

    assert not any(kept(r) for r in rows if r["submodel"] == 0), "W* should be dominated (untrained classifier)"
    for row in rows:  # from models/ if on the front, else from the trial's checkpoint
        target = tmp_path / "exports" / row["trial_id"]
        capsys.readouterr()
        code = main(["export", str(out), "--trial", row["trial_id"], "--out", str(target)])
        if kept(row):
            assert code == 0 and count_params(raytailor.load_tailored(target)) == row["params"]
        else:
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and len(err) == 1 and "was not kept" in err[0] and not target.exists()
    # a trial id exports the sub-model its trial chose; `pareto` rebuilds the same front
    exported = _cli("export", str(out), "--trial", trials[0]["trial_id"], "--out", str(tmp_path / "t0"), env=env)
    assert exported.returncode == 0, exported.stderr
    assert count_params(raytailor.load_tailored(tmp_path / "t0")) == trials[0]["params"]
    rebuilt = _cli("pareto", str(out), env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert sorted(json.loads(line)["trial_id"] for line in rebuilt.stdout.splitlines()) == sorted(
        f"{out.name}/{r['trial_id']}" for r in front)


# A search with a real target. The teacher reaches about 90 % on validation. Keeping every block
# (blocks_removed 0) gives about 80 %, removing 8 of the 9 blocks about 25 % (chance: 4 classes):
# with max_drop 40 the first is feasible and the second, the leaner one, is not. Seed 0 makes
# TPE's two random start-up trials draw both values (checked below, so that another Optuna
# release fails here, plainly).
TARGETED = {
    **TINY, "name": "targeted",
    "teacher": {"epochs": 3, "lr": 0.05, "batch_size": 32},
    "target": {"max_drop": 40.0},
    "search": {**TINY["search"], "trials": 2, "seed": 0},
    "space": {"blocks_removed": {"choices": [0, 8], "default": 0}},
    "fixed": {"student_epochs": 3, "finetune_epochs": 2, "batch_size": 32, "theta": 0.01, "gamma2": 3.0},
}


def _search(spec: dict, out: Path, env, *args) -> subprocess.CompletedProcess:
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = _cli("search", str(path), "--out", str(out), *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _study(out: Path) -> optuna.Study:
    """The one study of the search in ``out``."""
    storage = journal_storage(out / "optuna.journal")
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_search_with_a_real_target_keeps_infeasible_models_off_the_front_and_repeats_with_its_seed(tmp_path, env):
    """The search and its repeat (same spec and seed, its own teacher cache) run at the same time
    on one machine: each starts its own private Ray instance, neither joins the other's, neither
    one's end takes the other's trials with it, and the repeat gives the same trials and models."""
    started = []
    for name, cache in (("first", "cache"), ("again", "cache-again")):
        folder = tmp_path / name
        folder.mkdir()
        started.append(_start_search({**TARGETED, "name": name}, folder, {**env, "RAYTAILOR_CACHE": str(tmp_path / cache)}))
    for process, log, _ in started:
        assert process.wait(timeout=SEARCH_TIMEOUT) == 0, log_text(log)
    first = SimpleNamespace(stderr=log_text(started[0][1]))
    first_out, again_out = (out for _, _, out in started)
    rows = pq.read_table(first_out / "trials.parquet").to_pylist()
    teacher = json.loads((first_out / "teacher.json").read_text())
    target = teacher["accuracy_target"]
    assert target == pytest.approx(teacher["val_accuracy"] - 40.0)
    assert sorted(r["blocks_removed"] for r in rows) == [0, 8], "seed 0 no longer draws both values"
    assert all(r["status"] == "TERMINATED" for r in rows)
    feasible = [r for r in rows if r["feasible"]]
    infeasible = [r for r in rows if not r["feasible"]]
    assert [r["blocks_removed"] for r in feasible] == [0] and [r["blocks_removed"] for r in infeasible] == [8]
    for row in rows:  # feasible means val accuracy >= teacher val - max_drop
        assert row["feasible"] == (row["val_accuracy"] >= target)
    (lean,) = infeasible
    (kept,) = feasible
    assert lean["macs"] < kept["macs"] and lean["params"] < kept["params"]  # leaner, but below target
    # the front, the models and the leanest pick consider feasible models only
    assert not lean["on_front"] and kept["on_front"]
    kept_model = f"{kept['trial_id']}-it0"  # its one pruning: sub-model 0
    front = pq.read_table(first_out / "pareto.parquet").to_pylist()
    assert [r["trial_id"] for r in front] == [kept_model]
    assert sorted(p.name for p in (first_out / "models").iterdir()) == [kept_model]
    summary = json.loads((first_out / "summary.json").read_text())
    assert summary["feasible"] == 1 and summary["leanest"]["trial_id"] == kept_model
    assert f"leanest feasible: {kept_model}" in first.stderr
    # the journal holds the constraint: target - val accuracy, feasible when <= 0
    study = _study(first_out)
    by_value = {t.params["blocks_removed"]: t for t in study.trials}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for value, row in ((0, kept), (8, lean)):
        violation = pytest.approx(target - row["val_accuracy"])
        assert by_value[value].constraints["accuracy_target"] == violation  # Optuna 5's named constraint
        assert by_value[value].system_attrs["constraints"] == [violation]    # where optuna-dashboard reads it
    assert by_value[0].constraints["accuracy_target"] <= 0 < by_value[8].constraints["accuracy_target"]
    assert [t.params for t in study.best_trials] == [{"blocks_removed": 0}]  # Optuna's feasible front

    # the same spec and seed again: the same trials, in the same order, with the same models
    again = _study(again_out)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    repeated = {r["blocks_removed"]: r for r in pq.read_table(again_out / "trials.parquet").to_pylist()}
    for row in rows:
        assert {k: repeated[row["blocks_removed"]][k] for k in ("macs", "params", "val_accuracy", "feasible")} == {
            k: row[k] for k in ("macs", "params", "val_accuracy", "feasible")}


@pytest.mark.slow
def test_unreachable_target_gives_an_empty_front_and_failures_keep_their_reason(tmp_path, env):
    """max_drop 0: every model must match the teacher's validation accuracy, which one student epoch
    with every proxy pruned (theta 0.99) cannot. Removing all 9 blocks as well removes every path:
    that trial fails, with its reason, and Optuna is told FAIL."""
    spec = {**TARGETED, "name": "unreachable", "target": {"max_drop": 0.0},
            "space": {"blocks_removed": {"choices": [0, 9], "default": 0}},
            "fixed": {**TARGETED["fixed"], "student_epochs": 1, "theta": 0.99}}
    done = _search(spec, tmp_path / "out", env)
    out = tmp_path / "out"
    rows = {r["blocks_removed"]: r for r in pq.read_table(out / "trials.parquet").to_pylist()}
    assert sorted(rows) == [0, 9], "seed 0 no longer draws both values"
    assert rows[0]["status"] == "TERMINATED" and not rows[0]["feasible"] and not rows[0]["on_front"]
    assert rows[9]["status"] == "ERROR" and not rows[9]["feasible"] and not rows[9]["on_front"]
    assert rows[9]["val_accuracy"] is None
    assert rows[9]["reason"].startswith("TailoringError: pruning removed every path")  # one line
    assert "\n" not in rows[9]["reason"] and "\x1b" not in rows[9]["reason"]
    # it failed by itself, so it ran once: no retry (search.max_failures is for dead workers)
    (folder,) = [p for p in (out / "trials").iterdir() if rows[9]["trial_id"] in p.name]
    assert len((folder / "result.json").read_text().splitlines()) == rows[9]["trained_epochs"] + 1  # + its end
    assert pq.read_table(out / "pareto.parquet").num_rows == 0 and not list((out / "models").glob("*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feasible"] == summary["front"] == 0 and summary["leanest"] is None
    assert "no trial met the accuracy target; relax target.max_drop" in done.stderr
    study = _study(out)
    states = {t.params["blocks_removed"]: t.state for t in study.trials}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 9: optuna.trial.TrialState.FAIL}
    assert study.best_trials == []  # no feasible trial in Optuna's view either
    exported = _cli("export", str(out), "--out", str(tmp_path / "none"), env=env, timeout=COMMAND_TIMEOUT)
    assert exported.returncode == 2 and len(exported.stderr.strip().splitlines()) == 1
    assert "no trial in" in exported.stderr and "met the accuracy target" in exported.stderr
    assert not (tmp_path / "none").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs: a disk that can really fill up (mounting needs root, as on CI machines)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, *, leave: int) -> None:
    """Take all of ``disk``'s free space but ``leave`` bytes."""
    stats = os.statvfs(disk)
    with open(disk / "filler", "wb") as filler:
        filler.truncate(0)
        os.posix_fallocate(filler.fileno(), 0, stats.f_bavail * stats.f_frsize - leave)


@pytest.mark.slow
def test_a_full_disk_mid_search_leaves_tables_for_the_finished_trials(tmp_path, env, small_disk):
    """The disk fills as the second trial starts, leaving room for one student checkpoint
    (about 0.25 MB) but not two. The first trial's result is in the tables written as it ended;
    the search ends in one line naming what it could not write (not a traceback from Ray's
    unpickling of the empty error.pkl the full disk left); once space is freed, resume writes
    every output, the first trial's row unchanged and the second an ERROR with a one-line reason
    that names the full disk."""
    spec = {**TINY, "name": "full-disk", "search": {**TINY["search"], "trials": 2, "max_failures": 0}}
    path = tmp_path / "full-disk.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = small_disk / "search"
    process = subprocess.Popen([sys.executable, "-m", "raytailor.cli", "search", str(path), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + SEARCH_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((out / "trials").glob("tailoring_trial_*"))) >= 2:
            _fill(small_disk, leave=400_000)
            break
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=SEARCH_TIMEOUT)
    assert (small_disk / "filler").is_file(), "the second trial never started"
    assert process.returncode == 2, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"raytailor: error: cannot write {out}/") and "No space left on device" in last, last
    (first,) = pq.read_table(out / "trials.parquet").to_pylist()  # written when it ended
    assert first["status"] == "TERMINATED" and first["val_accuracy"] is not None

    (small_disk / "filler").unlink()
    resumed = _cli("resume", str(out), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = {r["trial_id"]: r for r in pq.read_table(out / "trials.parquet").to_pylist()}
    assert rows.pop(first["trial_id"]) == first
    (second,) = rows.values()
    # the reason names the full disk: the OSError's own line when error.txt fit on the disk,
    # our line when the full disk left it empty or cut short
    assert second["status"] == "ERROR" and "\n" not in second["reason"]
    assert "full disk" in second["reason"] or "No space left on device" in second["reason"], second["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] == 1 and summary["trials"] == 2
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(
        r["trial_id"] for r in pq.read_table(out / "pareto.parquet").to_pylist())


TWO_TASKS = {
    **{k: v for k, v in TINY.items() if k != "data"},
    "name": "two-tasks",
    "data": {k: v for k, v in TINY["data"].items() if k not in ("num_classes", "seed")},
    "tasks": [{"name": "four", "data": {"num_classes": 4, "seed": 1}},
              {"name": "three", "data": {"num_classes": 3, "seed": 2}, "target": {"max_drop": 90.0},
               "teacher": {"epochs": 1}}],
    "search": {**TINY["search"], "trials": 2, "max_concurrent": 2},
}


@pytest.mark.slow
def test_interrupted_multitask_search_resumes_without_losing_or_redoing_trials_and_banks_every_task(tmp_path, env, capsys):
    """A two-task search is interrupted once a trial has finished, moved, and every pickle Ray
    left in it is replaced by one that runs code when loaded; `resume` finishes it, reading none
    of them. Each task keeps its own teacher, target, study, early-stopping record, tables,
    front and models, holding its own trials only; finished trials are kept, not redone; the
    summary adds the tasks up, the object store held one copy of the frozen backbone for both,
    and `raytailor bank` on the search folder serves each task exactly as its own export does."""
    import torch

    tasks = ("four", "three")
    process, log, out = _start_search(TWO_TASKS, tmp_path, env)
    # interrupt once a trial has finished *and* the search has recorded it (told Optuna), not
    # merely once its checkpoint file appeared: that is the state resume must keep
    deadline = time.time() + SEARCH_TIMEOUT
    while time.time() < deadline and process.poll() is None and not any(
            _finished_in_journal(out / task / "optuna.journal") for task in tasks):
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before it was interrupted:\n" + log_text(log)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=COMMAND_TIMEOUT)
    assert f"raytailor resume {out}" in log_text(log)  # the interrupted search says how to continue
    finished = {task: {r["trial_id"]: r for r in pq.read_table(out / task / "trials.parquet").to_pylist()
                       if r["status"] == "TERMINATED"}
                for task in tasks if (out / task / "trials.parquet").is_file()}
    assert 1 <= sum(map(len, finished.values())) < 4
    # the folder is moved (shared, copied between people) and every pickle Ray left in it is
    # replaced by one that runs code when loaded: resume reads none of them and writes only here
    original, out = out, tmp_path / "moved" / "search"
    out.parent.mkdir()
    shutil.move(original, out)
    canary = tmp_path / "pwned"
    pickles = list(out.rglob("*.pkl"))
    assert any(p.name == "tuner.pkl" for p in pickles)
    plant(pickles, canary)
    lines_before = {tid: _trial_lines(out, tid) for ended in finished.values() for tid in ended}

    done = _cli("resume", str(out), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not canary.exists() and not original.exists()
    assert not (out / "trials" / "restarts").exists()  # interrupted trials' states, used and gone
    assert done.stderr.count("reusing the cached teacher") == 2  # no teacher is trained again
    trial_dirs = [p for p in (out / "trials").iterdir() if (p / "params.json").is_file()]
    by_task = {task: {p.name.split("_")[2] for p in trial_dirs
                      if json.loads((p / "params.json").read_text())["task"] == task} for task in tasks}
    assert [len(by_task[task]) for task in tasks] == [2, 2]
    summary = json.loads((out / "summary.json").read_text())
    teachers = {task: json.loads((out / task / "teacher.json").read_text()) for task in tasks}
    assert teachers["four"]["cache_key"] != teachers["three"]["cache_key"]
    for task, max_drop in zip(tasks, (100.0, 90.0)):
        assert teachers[task]["accuracy_target"] == pytest.approx(teachers[task]["val_accuracy"] - max_drop)
        rows = pq.read_table(out / task / "trials.parquet").to_pylist()
        assert {r["trial_id"] for r in rows} == by_task[task]  # its own trials only, every one ended
        assert all(r["status"] in ("TERMINATED", "STOPPED", "ERROR") for r in rows)
        study = optuna.load_study(study_name=task, storage=journal_storage(out / task / "optuna.journal"))
        assert all(t.state.is_finished() for t in study.trials)
        sampled = [t for t in study.trials if "submodel" not in t.user_attrs]
        assert {t.user_attrs["ray_trial_id"] for t in sampled} == by_task[task]
        # early stopping judged each task's trials against that task's alone
        record = json.loads((out / task / "early_stopping.json").read_text())
        judged = {t for points in record["rungs"].values() for t in points} | set(record["finished"])
        assert judged and not judged & set().union(*(by_task[o] for o in tasks if o != task))
        # (what early stopping decided and keeps across a resume: test_early_stopping_decisions_...;
        # failed trials and their reasons: test_unreachable_target_...; here a trial may fail or not)

        # every pruning of every trial's student is a sub-model row, and the sampler saw each one
        submodels = pq.read_table(out / task / "submodels.parquet").to_pylist()
        for trial in (r for r in rows if r["status"] == "TERMINATED"):
            own = [r for r in submodels if r["trial_id"].rsplit("-it", 1)[0] == trial["trial_id"]]
            # (a trial early stopping judged with a pruning ready ends with the ones it has)
            cut_short = (trial["reason"] or "").startswith("ended with the sub-models it had ready")
            assert [r["submodel"] for r in own] == list(range(len(own))) and len(own) >= (1 if cut_short else 2)
            assert {r["blocks_removed"] for r in own[1:]} <= {0, 4}  # it0 is the sampled pruning
            (chosen,) = [r for r in own if r["chosen"]]
            assert {k: chosen[k] for k in ("val_accuracy", "macs", "blocks_removed")} == {
                k: trial[k] for k in ("val_accuracy", "macs", "blocks_removed")}
            told = [t for t in study.trials if "submodel" in t.user_attrs
                    and t.user_attrs["ray_trial_id"].endswith(trial["trial_id"])]
            assert len(told) == len(own) - 1 and all(r["blocks_removed"] != own[0]["blocks_removed"] for r in own[1:])
            for t in told:
                (row,) = [r for r in own if r["submodel"] == t.user_attrs["submodel"]]
                assert t.params["blocks_removed"] == row["blocks_removed"] and t.values == [row["val_accuracy"], row["macs"]]
        for trial_id, row in finished.get(task, {}).items():  # kept, not redone
            again = next(r for r in rows if r["trial_id"] == trial_id)
            assert again["val_accuracy"] == row["val_accuracy"] and again["macs"] == row["macs"]
            assert _trial_lines(out, trial_id) == lines_before[trial_id]

        # outputs a user relies on, per task
        front = pq.read_table(out / task / "pareto.parquet").to_pylist()
        assert front and all(r["on_front"] and r["feasible"] for r in front)
        assert (out / task / "pareto.png").stat().st_size > 5000
        for row in front:
            model = raytailor.load_tailored(out / task / "models" / row["trial_id"])
            assert count_params(model) == row["params"]
        metadata = pq.read_schema(out / task / "trials.parquet").metadata
        assert b"spec" in metadata and b"versions" in metadata
        own_summary = json.loads((out / task / "summary.json").read_text())
        leanest_row = own_summary["leanest"]
        assert leanest_row["macs"] == min(r["macs"] for r in rows if r["feasible"])
        assert summary["tasks"][task]["leanest"]["trial_id"] == leanest_row["trial_id"]
        assert summary["tasks"][task]["teacher"]["val_accuracy"] == teachers[task]["val_accuracy"]
        capsys.readouterr()  # the commands below run in this process (no new process's imports each)
        assert main(["export", str(out / task), "--trial", "leanest", "--out", str(tmp_path / task)]) == 0
        assert count_params(raytailor.load_tailored(tmp_path / task)) == leanest_row["params"]
        assert json.loads((tmp_path / task / "result.json").read_text())["macs"] == leanest_row["macs"]
        capsys.readouterr()
        assert main(["pareto", str(out / task), "--out", str(tmp_path / "front.parquet"), "--plot",
                     str(tmp_path / "front.png")]) == 0
        assert len(capsys.readouterr().out.strip().splitlines()) == len(front)
    # a trial the resume ran again from the state it kept may have trained no student in its own
    # folder: the folder from before the interruption stays beside, under interrupted/
    hparam_keys = [_tensorboard_hparam_keys(p) for p in trial_dirs]
    # every trial, the conditional gamma1 included, has the same HParams keys, and its task (the
    # HParams view filters and groups by it)
    assert all(keys == sorted([*TINY["space"], "task"]) for keys in hparam_keys), hparam_keys
    assert summary["totals"]["trials"] == 4 and summary["totals"]["tasks"] == 2
    # the frozen backbone is in the object store once for both tasks: what each task would hold
    # of its own, less one copy of every backbone tensor but the classifier
    from raytailor.backbones import create_backbone

    frozen = sum(p.numel() * 4 for name, p in create_backbone("resnet20", num_classes=3).state_dict().items()
                 if not name.startswith("classifier."))
    saved = summary["totals"]["separate_bytes"] - summary["totals"]["object_store_bytes"]
    assert saved == pytest.approx(frozen, rel=0.02)

    assert main(["bank", str(out), "--out", str(tmp_path / "bank"), "--json"]) == 0
    bank = raytailor.load_bank(tmp_path / "bank")
    assert sorted(bank.tasks) == sorted(tasks)  # every task has a feasible model (targets far below)
    x = torch.rand(5, 3, 16, 16)
    for task in tasks:
        standalone = raytailor.load_tailored(out / task / "models" / summary["tasks"][task]["leanest"]["trial_id"])
        with torch.no_grad():
            assert torch.equal(bank.model(task)(x), standalone(x))
