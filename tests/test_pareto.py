import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raytailor.errors import ExportError, RaytailorError
from raytailor.front_plot import front_figure, plot_front
from raytailor.pareto import leanest, mark_front, non_dominated, objective_columns
from raytailor.trials_table import combine_tables, read_trials_table, write_trials_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def brute_force(points, senses):
    n = len(points)
    sign = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    costs = points * sign

    def dominates(a, b):
        if np.isnan(a).any() or np.isnan(b).any():
            return False
        better_or_equal = all(a[k] <= b[k] for k in range(len(a)))
        strictly = any(a[k] < b[k] for k in range(len(a)))
        return better_or_equal and strictly

    mask = []
    for j in range(n):
        if np.isnan(costs[j]).any():
            mask.append(False)
            continue
        mask.append(not any(dominates(costs[i], costs[j]) for i in range(n) if i != j))
    return np.array(mask, dtype=bool)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "senses", [["max", "min"], ["min", "min"], ["max", "min", "min"], ["min", "max", "max"]]
)
def test_non_dominated_matches_brute_force(seed, senses):
    rng = np.random.default_rng(seed)
    n, m = 60, len(senses)
    points = rng.normal(size=(n, m))
    points[:, 0] = np.round(points[:, 0] * 2) / 2  # heavy ties in the first column
    points[rng.choice(n, 8, replace=False), 1] = 0.0  # more ties in the second one
    dup = rng.choice(n, 6, replace=False)
    points = np.vstack([points, points[dup]])  # exact duplicates
    nan_rows = rng.choice(len(points), 4, replace=False)
    points[nan_rows, rng.integers(0, m, size=4)] = np.nan
    expected = brute_force(points, senses)
    got = non_dominated(points, senses)
    assert got.dtype == bool and got.shape == (len(points),)
    np.testing.assert_array_equal(got, expected)
    assert not got[nan_rows].any()
    assert expected.any()


def test_non_dominated_small_cases():
    pts = np.array([[90.0, 10.0], [90.0, 10.0], [80.0, 5.0], [85.0, 20.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(
        non_dominated(pts, ["max", "min"]), [True, True, True, False, False]
    )
    # a NaN row with a "perfect" value does not dominate anything
    pts = np.array([[np.nan, -100.0], [1.0, 1.0]])
    np.testing.assert_array_equal(non_dominated(pts, ["max", "min"]), [False, True])
    assert non_dominated(np.empty((0, 2)), ["max", "min"]).shape == (0,)
    # blocking over many rows gives the same answer as the brute force
    rng = np.random.default_rng(7)
    big = np.round(rng.normal(size=(1100, 2)), 1)
    np.testing.assert_array_equal(
        non_dominated(big, ["max", "min"]), brute_force(big, ["max", "min"])
    )


def test_non_dominated_rejects_bad_senses():
    with pytest.raises(RaytailorError, match="one sense per column"):
        non_dominated(np.zeros((3, 2)), ["max"])
    with pytest.raises(RaytailorError, match="'max' or 'min'"):
        non_dominated(np.zeros((3, 2)), ["max", "up"])


def test_objective_columns():
    assert objective_columns(["accuracy", "macs"]) == [("val_accuracy", "max"), ("macs", "min")]
    assert objective_columns(["params", "accuracy", "task_params"]) == [
        ("params", "min"),
        ("val_accuracy", "max"),
        ("task_params", "min"),
    ]
    for bad in (["accuracy", "flops"], ["test_accuracy", "macs"], [], ["macs", "macs"]):
        with pytest.raises(RaytailorError):
            objective_columns(bad)
    with pytest.raises(RaytailorError, match="validation accuracy"):
        objective_columns(["test_accuracy"])


def row(
    trial_id,
    val,
    macs,
    *,
    test=None,
    status="TERMINATED",
    feasible=True,
    params=1000,
    lr=0.1,
    **extra,
):
    return {
        "trial_id": trial_id,
        "status": status,
        "lr": lr,
        "val_accuracy": val,
        "test_accuracy": val if test is None else test,
        "params": params,
        "macs": macs,
        "task_params": params // 10 if params is not None else None,
        "feasible": feasible,
        **extra,
    }


def front_ids(rows):
    return sorted(r["trial_id"] for r in rows if r["on_front"])


def test_mark_front_excludes_infeasible_and_failed_rows():
    rows = [
        row("a", 90.0, 200),
        row("b", 85.0, 100),
        row("c", 80.0, 150),  # dominated by b
        row("bad", 99.0, 10, feasible=False),  # would dominate all: infeasible
        row("err", 99.5, 5, status="ERROR"),  # would dominate all: failed
        row("nan", math.nan, 1),  # completed status but no metric
        row("none", 95.0, None),
        row("run", 99.0, 1, status="RUNNING"),
    ]
    marked = mark_front(rows, ["accuracy", "macs"])
    assert front_ids(marked) == ["a", "b"]
    assert all(isinstance(r["on_front"], bool) for r in marked)
    assert [r["trial_id"] for r in marked] == [r["trial_id"] for r in rows]
    assert "on_front" not in rows[0]  # inputs untouched
    assert all(not r["on_front"] for r in mark_front([rows[3], rows[4]], ["accuracy", "macs"]))
    assert mark_front([], ["accuracy", "macs"]) == []


def test_mark_front_uses_validation_not_test_accuracy():
    rows = [row("val_best", 90.0, 100, test=80.0), row("test_best", 85.0, 100, test=95.0)]
    assert front_ids(mark_front(rows, ["accuracy", "macs"])) == ["val_best"]


def test_mark_front_three_objectives():
    rows = [
        row("a", 90.0, 100, params=500),
        row("b", 90.0, 100, params=400),  # dominates a on params
        row("c", 80.0, 50, params=900),
        row("d", 80.0, 50, params=900),  # duplicate of c: both stay
    ]
    assert front_ids(mark_front(rows, ["accuracy", "macs", "params"])) == ["b", "c", "d"]
    assert front_ids(mark_front(rows, ["accuracy", "macs"])) == ["a", "b", "c", "d"]


def test_leanest():
    rows = [
        row("t3", 80.0, 100),
        row("t2", 85.0, 100),  # same cost, higher accuracy
        row("t1", 85.0, 100),  # full tie: smaller trial id wins
        row("t0", 99.0, 50, feasible=False),
        row("t9", 99.0, 10, status="ERROR"),
        row("t8", 99.0, 300),
    ]
    assert leanest(rows)["trial_id"] == "t1"
    # every row has params=1000: the cost ties, so the most accurate feasible row wins
    assert leanest(rows, cost="params")["trial_id"] == "t8"
    rows.append(row("t7", 70.0, 400, params=10))
    assert leanest(rows, cost="params")["trial_id"] == "t7"
    assert leanest([row("x", 99.0, 1, feasible=False), row("y", 99.0, 1, status="ERROR")]) is None
    assert leanest([]) is None
    with pytest.raises(RaytailorError):
        leanest(rows, cost="accuracy")


HPARAMS = {"lr": "float", "epochs": "int", "optimizer": "str", "pretrained": "bool"}
METADATA = {"spec": "name: demo\nobjectives: [accuracy, macs]\n", "versions": '{"torch": "2.5"}'}


def sample_rows():
    rows = [
        row("t0", 91.5, 2_000_000, epochs=3, optimizer="sgd", pretrained=True),
        row(
            "t1",
            88.0,
            1_000_000,
            lr=np.float64(0.01),
            epochs=np.int64(5),
            optimizer="adam",
            pretrained=np.bool_(False),
        ),
        {
            "trial_id": "t2",
            "status": "ERROR",
            "lr": 0.5,
            "epochs": 2.0,
            "optimizer": "sgd",
            "pretrained": None,
            "val_accuracy": None,
            "test_accuracy": math.nan,
            "params": None,
            "macs": None,
            "task_params": None,
            "feasible": False,
            "extra_key": "ignored",
        },
    ]
    return mark_front(rows, ["accuracy", "macs"])


def test_write_read_round_trip(tmp_path):
    path = tmp_path / "search" / "trials.parquet"
    write_trials_table(sample_rows(), path, hyperparameters=HPARAMS, metadata=METADATA)
    schema = pq.read_schema(path)
    expected = [
        ("trial_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("trained_epochs", pa.int64()),
        ("submodel", pa.int64()),
        ("chosen", pa.bool_()),
        ("lr", pa.float64()),
        ("epochs", pa.int64()),
        ("optimizer", pa.string()),
        ("pretrained", pa.bool_()),
        ("val_accuracy", pa.float64()),
        ("test_accuracy", pa.float64()),
        ("params", pa.int64()),
        ("macs", pa.int64()),
        ("task_params", pa.int64()),
        ("feasible", pa.bool_()),
        ("on_front", pa.bool_()),
    ]
    assert [(f.name, f.type) for f in schema] == expected

    rows, metadata = read_trials_table(path)
    assert metadata == METADATA
    assert [list(r) for r in rows] == [[name for name, _ in expected]] * 3
    assert (
        rows[0]["trial_id"] == "t0"
        and rows[0]["on_front"] is True
        and rows[0]["pretrained"] is True
    )
    assert rows[1]["lr"] == 0.01 and rows[1]["epochs"] == 5 and rows[1]["pretrained"] is False
    failed = rows[2]
    assert failed["status"] == "ERROR" and failed["epochs"] == 2
    for key in ("val_accuracy", "test_accuracy", "params", "macs", "task_params", "pretrained"):
        assert failed[key] is None, key
    assert failed["feasible"] is False and failed["on_front"] is False
    table = pq.read_table(path)
    assert table.column("macs").null_count == 1 and table.column("test_accuracy").null_count == 1
    assert not list(path.parent.glob(".*tmp*"))  # no temp file left behind


def test_write_empty_and_unmarked_rows(tmp_path):
    write_trials_table([], tmp_path / "empty.parquet", hyperparameters={"lr": "float"}, metadata={})
    rows, metadata = read_trials_table(tmp_path / "empty.parquet")
    assert rows == [] and metadata == {}
    assert pq.read_schema(tmp_path / "empty.parquet").names[:7] == ["trial_id", "status", "reason", "trained_epochs", "submodel", "chosen", "lr"]
    # rows that were never marked: on_front is null, not a guess
    write_trials_table(
        [row("a", 1.0, 1)], tmp_path / "u.parquet", hyperparameters={"lr": "float"}, metadata={}
    )
    assert read_trials_table(tmp_path / "u.parquet")[0][0]["on_front"] is None


def test_write_rejects_bad_input(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RaytailorError, match="declared int"):
        write_trials_table(
            [row("a", 1.0, 1, epochs=2.5)], path, hyperparameters={"epochs": "int"}, metadata={}
        )
    with pytest.raises(RaytailorError, match="declared str"):
        write_trials_table(
            [row("a", 1.0, 1, optimizer=3)], path, hyperparameters={"optimizer": "str"}, metadata={}
        )
    with pytest.raises(RaytailorError, match="type 'double'"):
        write_trials_table([row("a", 1.0, 1)], path, hyperparameters={"lr": "double"}, metadata={})
    with pytest.raises(RaytailorError, match="clashes"):
        write_trials_table([row("a", 1.0, 1)], path, hyperparameters={"macs": "int"}, metadata={})
    with pytest.raises(RaytailorError, match="trial_id"):
        write_trials_table([row(None, 1.0, 1)], path, hyperparameters={}, metadata={})
    assert not path.exists()


def test_read_missing_or_corrupt_raises_export_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        read_trials_table(tmp_path / "nope.parquet")
    corrupt = tmp_path / "trials.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all" * 10)
    with pytest.raises(ExportError, match="not readable Parquet") as info:
        read_trials_table(corrupt)
    assert "\n" not in str(info.value)
    # a truncated real table
    good = tmp_path / "good.parquet"
    write_trials_table(sample_rows(), good, hyperparameters=HPARAMS, metadata=METADATA)
    corrupt.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ExportError):
        read_trials_table(corrupt)
    # valid Parquet that is not a trials table
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(ExportError, match="not a raytailor trials table"):
        read_trials_table(other)


def test_combine_tables_unions_columns_and_keeps_ids_unique(tmp_path):
    a = tmp_path / "search_a" / "trials.parquet"
    b = tmp_path / "search_b" / "trials.parquet"
    write_trials_table(
        [row("t0", 90.0, 100, lr=0.1), row("t1", 80.0, 50, lr=0.2)],
        a,
        hyperparameters={"lr": "float"},
        metadata={},
    )
    write_trials_table(
        [row("t0", 85.0, 70, lr=None, width=0.5), row("t1", 70.0, 20, lr=0.3, width=0.25)],
        b,
        hyperparameters={"width": "float", "lr": "float"},
        metadata={},
    )
    rows = combine_tables([a, b])
    ids = [r["trial_id"] for r in rows]
    assert ids == ["search_a/t0", "search_a/t1", "search_b/t0", "search_b/t1"]
    assert len(set(ids)) == len(ids)
    assert all({"lr", "width", "macs", "on_front"} <= set(r) for r in rows)
    assert rows[0]["width"] is None and rows[0]["lr"] == 0.1
    assert rows[2]["width"] == 0.5 and rows[2]["lr"] is None
    # the combined rows feed straight back into the front and the table writer
    marked = mark_front(rows, ["accuracy", "macs"])
    assert front_ids(marked) == ["search_a/t0", "search_a/t1", "search_b/t0", "search_b/t1"]
    out = tmp_path / "all" / "trials.parquet"
    write_trials_table(marked, out, hyperparameters={"lr": "float", "width": "float"}, metadata={})
    assert len(read_trials_table(out)[0]) == 4
    assert combine_tables([]) == []
    # two tables whose directories share a name would collide
    c = tmp_path / "other" / "search_a" / "trials.parquet"
    write_trials_table([row("t0", 1.0, 1)], c, hyperparameters={}, metadata={})
    with pytest.raises(RaytailorError, match="not unique"):
        combine_tables([a, c])


def assert_png(path, width=960, height=660):
    """A real PNG of the figure's size (8 x 5.5 inches at 120 dpi)."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05  # something is drawn


def drawn(fig) -> dict:
    """What the figure shows: the points of each labelled scatter (by its label's first word), the
    horizontal lines' heights, the legend labels, the texts and the x scale."""
    (ax,) = fig.axes
    points = {}
    for collection in ax.collections:
        label = collection.get_label().split(" ")[0]  # feasible, infeasible, Pareto, teacher, below
        points[label] = sorted(map(tuple, np.asarray(collection.get_offsets()).tolist()))
    lines = {line.get_label().split(" ")[0]: line.get_ydata()[0] for line in ax.lines
             if line.get_label()[:1] != "_" and len(line.get_ydata())}
    return {"points": points, "lines": lines, "legend": ax.get_legend_handles_labels()[1],
            "texts": [t.get_text() for t in ax.texts], "xscale": ax.get_xscale(), "ylim": ax.get_ylim()}


def test_plot_front_draws_every_model_the_front_the_teacher_and_the_target(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        macs = int(10 ** rng.uniform(5, 8))
        acc = 60 + 10 * math.log10(macs) / 2 + rng.normal(0, 2)
        rows.append(row(f"t{i:02d}", acc, macs, feasible=bool(rng.random() > 0.2)))
    rows.append(row("err", None, None, status="ERROR"))
    teacher = {"macs": 300_000_000, "params": 11_000_000, "val_accuracy": 92.0}
    fig = front_figure(rows, objectives=["accuracy", "macs"], teacher=teacher, max_drop=3.0, title="demo")
    shown = drawn(fig)
    xy = lambda subset: sorted((float(r["macs"]), float(r["val_accuracy"])) for r in subset)
    feasible = [r for r in rows[:40] if r["feasible"]]
    infeasible = [r for r in rows[:40] if not r["feasible"]]
    assert 0 < len(infeasible) < 40
    front = [r for r in mark_front(rows, ["accuracy", "macs"]) if r["on_front"]]
    assert front and all(r["feasible"] for r in front)
    assert shown["points"]["feasible"] == xy(feasible)
    assert shown["points"]["infeasible"] == xy(infeasible)
    assert shown["points"]["Pareto"] == xy(front)
    assert shown["points"]["teacher"] == [(300_000_000.0, 92.0)]
    assert shown["lines"]["target"] == pytest.approx(89.0)
    assert "1 failed trial(s) not shown" in shown["legend"]
    assert shown["xscale"] == "log" and fig.axes[0].get_title() == "demo"
    path = tmp_path / "plots" / "front.png"
    plot_front(rows, path, objectives=["accuracy", "macs"], teacher=teacher, max_drop=3.0, title="demo")
    assert_png(path)
    # three objectives: the front over all three, drawn against the first cost (params)
    three = ["accuracy", "params", "macs"]
    shown = drawn(front_figure(rows, objectives=three))
    assert shown["points"]["Pareto"] == sorted(
        (float(r["params"]), float(r["val_accuracy"])) for r in mark_front(rows, three) if r["on_front"])
    assert "teacher" not in shown["points"] and "target" not in shown["lines"]


def test_plot_front_gives_each_search_its_own_colour():
    from matplotlib.colors import to_rgba

    a = [{**row(f"a/t{i}", 90.0 + i, 100 * (i + 1)), "trial_id": f"a/t{i}"} for i in range(3)]
    b = [{**row(f"b/t{i}", 88.0 + i, 150 * (i + 1), feasible=i > 0), "trial_id": f"b/t{i}"} for i in range(3)]
    fig = front_figure(a + b, objectives=["accuracy", "macs"])
    (ax,) = fig.axes
    by_label = {c.get_label(): c for c in ax.collections}
    assert set(by_label) >= {"a: feasible (3)", "b: feasible (2)", "b: infeasible (1)"}
    colour_a = tuple(by_label["a: feasible (3)"].get_facecolor()[0])
    colour_b = tuple(by_label["b: feasible (2)"].get_facecolor()[0])
    assert colour_a != colour_b
    assert tuple(by_label["b: infeasible (1)"].get_edgecolor()[0]) == colour_b
    front = [r for r in mark_front(a + b, ["accuracy", "macs"]) if r["on_front"]]
    (pareto,) = [c for c in ax.collections if c.get_label().startswith("Pareto")]
    faces = [tuple(f) for f in pareto.get_facecolor()]
    assert faces == [to_rgba("C0") if r["trial_id"].startswith("a/") else to_rgba("C1") for r in front]
    # one search: grey as before
    shown = drawn(front_figure(a, objectives=["accuracy", "macs"]))
    assert "feasible" in shown["points"]


def test_plot_front_edge_cases(tmp_path):
    teacher = {"macs": 1000, "val_accuracy": 90.0}
    infeasible = [row("a", 80.0, 100, feasible=False), row("b", None, None, status="ERROR")]
    shown = drawn(front_figure(infeasible, objectives=["accuracy", "macs"], teacher=teacher, max_drop=2.0))
    assert shown["points"]["infeasible"] == [(100.0, 80.0)]
    assert "Pareto" not in shown["points"] and "feasible" not in shown["points"]
    assert shown["lines"]["target"] == pytest.approx(88.0)
    shown = drawn(front_figure([row("only", 80.0, 100)], objectives=["accuracy", "macs"]))
    assert shown["points"]["feasible"] == shown["points"]["Pareto"] == [(100.0, 80.0)]
    shown = drawn(front_figure([], objectives=["accuracy", "macs"]))
    assert shown["points"] == {} and shown["texts"] == ["no completed trials"]
    plot_front([], tmp_path / "empty.png", objectives=["accuracy", "macs"])
    assert_png(tmp_path / "empty.png")
    # a collapsed model far below the target: the axis zooms to the band, the model sits on its edge
    collapsed = [row("ok", 89.5, 500), row("collapsed", 20.0, 100, feasible=False)]
    shown = drawn(front_figure(collapsed, objectives=["accuracy", "macs"], teacher=teacher, max_drop=2.0))
    bottom = shown["ylim"][0]
    assert bottom > 70 and shown["points"]["below"] == [(100.0, bottom)]
    with pytest.raises(RaytailorError, match="max_drop"):
        plot_front([], tmp_path / "x.png", objectives=["accuracy", "macs"], max_drop=1.0)


def test_pareto_command_prints_each_front_model_with_its_hyperparameters_and_says_an_empty_front(
        tmp_path, capsys):
    import json

    from raytailor.cli import main

    search = tmp_path / "search"
    rows = [row("lean", 90.0, 1_000, lr=0.2), row("big", 95.0, 9_000, lr=0.1),
            row("dominated", 89.0, 5_000), row("infeasible", 99.0, 100, feasible=False)]
    write_trials_table(rows, search / "trials.parquet", hyperparameters={"lr": "float"}, metadata={})
    assert main(["pareto", str(search)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["trial_id"], p["lr"], p["feasible"]) for p in printed] == [("search/lean", 0.2, True),
                                                                         ("search/big", 0.1, True)]
    empty = tmp_path / "empty"
    write_trials_table([row("infeasible", 99.0, 100, feasible=False)], empty / "trials.parquet",
                       hyperparameters={"lr": "float"}, metadata={})
    assert main(["pareto", str(empty)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "the front is empty" in err


def test_pareto_plot_draws_the_teacher_and_target_the_searches_share(tmp_path):
    """What `pareto --plot` passes to the figure: the teacher and max_drop of the searches when
    they agree, nothing when they differ (other tasks)."""
    import json

    import yaml

    from raytailor.pareto import shared_reference

    def search(name, teacher_val, max_drop):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "teacher.json").write_text(json.dumps({"val_accuracy": teacher_val, "macs": 10_000,
                                                         "params": 500, "task_params": 500}))
        (folder / "spec.yaml").write_text(yaml.safe_dump({"target": {"max_drop": max_drop}}))
        return folder

    a, b, other = search("a", 95.0, 1.5), search("b", 95.0, 1.5), search("other", 80.0, 1.5)
    teacher, max_drop = shared_reference([a, b])
    assert teacher["val_accuracy"] == 95.0 and teacher["macs"] == 10_000 and max_drop == 1.5
    assert shared_reference([a, other]) == (None, None)
    assert shared_reference([tmp_path / "missing"]) == (None, None)
    figure = front_figure([row("m", 94.0, 5_000)], objectives=["accuracy", "macs"], teacher=teacher,
                          max_drop=max_drop)
    drawn = [line.get_ydata()[0] for line in figure.axes[0].lines if line.get_linestyle() == "--"]
    assert drawn == [93.5]  # the target line at teacher - max_drop


def test_the_target_line_says_how_finely_the_validation_split_judges_the_constraint():
    from raytailor.pareto import target_resolution

    demo = target_resolution(97.8, 1.5, 143)  # the demo: 143 images, 99.30 % - 1.5
    assert demo.startswith("143 validation images: one is 0.70 points, the standard error at the target 1.23")
    assert "feasibility turns on a few images" in demo
    roomy = target_resolution(96.3, 5.0, 10_000)  # 0.19 points of error against a 5-point margin
    assert roomy == "10,000 validation images: one is 0.01 points, the standard error at the target 0.19"
    assert target_resolution(100.0, 0.0, 0).startswith("0 validation images")  # never a division by zero
