"""Spec validation: unknown keys, wrong types, bad values, --set overrides."""

from pathlib import Path

import pytest
import yaml

from raytailor.errors import SpecError
from raytailor.spec import MultiTaskSpec, load_search_spec, load_spec, parse_multitask_spec, parse_spec

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "search_spaces" / "demo.yaml"


def _raw():
    return yaml.safe_load(DEMO.read_text())


def test_demo_spec_loads_and_resolves_defaults():
    spec = load_spec(DEMO)
    values = spec.hyperparameters()
    assert values["gamma1"] == 0.3 and values["skips"] == 3 and values["student_epochs"] == 16
    config = spec.method_config()
    assert config.gamma2 == 3.0 and config.batch_size == 64 and config.momentum == 0.9  # method default


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda r: r.update(colour="red"), "unknown key 'colour'"),
        (lambda r: r["data"].update(imagesize=32), "spec.data: unknown key 'imagesize'"),
        (lambda r: r["data"].update(image_size="big"), "spec.data.image_size must be an integer"),
        (lambda r: r["data"].update(image_size=True), "must be an integer"),
        (lambda r: r["teacher"].update(lr="fast"), "spec.teacher.lr must be a number"),
        (lambda r: r["backbone"].update(arch="resnet9000"), "backbone.arch 'resnet9000' is unknown"),
        (lambda r: r.update(method="magic"), "method must be one of"),
        (lambda r: r["target"].update(max_drop=-1), "target.max_drop must be >= 0"),
        (lambda r: r["space"].update(gamma3={"low": 0, "high": 1}), "space.gamma3 is not a nettailor hyper-parameter"),
        (lambda r: r["space"]["gamma1"].update(low=5.0), "low 5.0 must be <= high 3.0"),
        (lambda r: r["space"]["skips"].update(choices=[]), "choices is empty"),
        (lambda r: r["space"]["skips"].update(default=9), "default 9 is not one of the choices"),
        (lambda r: r["fixed"].update(student_epochs=0), "student_epochs must be >= 1"),
        (lambda r: r["search"].update(sampler="grid"), "search.sampler must be one of"),
        (lambda r: r["search"]["resources"].update(cpu=0), "search.resources.cpu must be > 0"),
        (lambda r: r["search"].update(early_stopping={"dominance_se": -1}),
         "search.early_stopping.dominance_se must be >= 0 standard errors, got -1"),
        (lambda r: r["search"].update(early_stopping={"grace_epochs": 0}), "search.early_stopping.grace_epochs must be >= 1"),
        (lambda r: r["search"].update(early_stopping="sometimes"), "search.early_stopping must be none or a mapping"),
        (lambda r: r.pop("data"), "missing required key 'data'"),
        (lambda r: r.update(objectives=["macs"]), "objectives must start with accuracy"),
    ],
)
def test_bad_specs_give_one_line_errors(mutate, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_set_overrides_fields_and_pins_hyperparameters():
    spec = parse_spec(_raw(), overrides=["data.image_size=16", "gamma1=0.7", "teacher.epochs=1"])
    assert spec.data.image_size == 16 and spec.teacher.epochs == 1
    assert "gamma1" not in spec.space and spec.fixed["gamma1"] == 0.7
    assert spec.hyperparameters()["gamma1"] == 0.7


@pytest.mark.parametrize("item,message", [("gamma9=1", "not a spec field"), ("novalue", "KEY=VALUE"),
                                          ("skips=many", "skips")])
def test_bad_overrides(item, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_raw(), overrides=[item])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_is_valid(path):
    loaded = load_search_spec(path)
    for spec in loaded.tasks.values() if isinstance(loaded, MultiTaskSpec) else [loaded]:
        assert spec.space and spec.method_config() is not None
        for name, param in spec.space.items():
            assert param.default is not None, f"{path.name}: {name} needs a default for `raytailor tailor`"


def _two_tasks():
    raw = _raw()
    raw.pop("data")
    raw["data"] = {"image_size": 16, "val_fraction": 0.2}  # defaults for every task
    raw["tasks"] = [{"name": "digits4", "data": {"dataset": "digits", "num_classes": 4}},
                    {"name": "digits10", "data": {"dataset": "digits", "val_fraction": 0.1},
                     "target": {"max_drop": 3.0}, "teacher": {"epochs": 2}}]
    return raw


def test_a_spec_with_tasks_gives_each_task_its_own_whole_spec():
    multi = parse_multitask_spec(_two_tasks(), overrides=["search.trials=3", "teacher.lr=0.2"])
    assert list(multi.tasks) == ["digits4", "digits10"] and multi.name == "demo-digits-resnet20"
    four, ten = multi.tasks.values()
    assert four.name == "demo-digits-resnet20-digits4" and four.data.num_classes == 4
    assert four.data.image_size == ten.data.image_size == 16  # the shared data defaults
    assert four.data.val_fraction == 0.2 and ten.data.val_fraction == 0.1  # the task's own wins
    assert four.target.max_drop == 1.5 and ten.target.max_drop == 3.0
    assert (four.teacher.epochs, ten.teacher.epochs) == (15, 2) and four.teacher.lr == ten.teacher.lr == 0.2
    assert four.search.trials == ten.search.trials == 3 and four.space == ten.space
    # --set wins over a task's own value too, and the recorded spec says so (a resume reads it)
    multi = parse_multitask_spec(_two_tasks(), overrides=["data.val_fraction=0.3", "target.max_drop=0.25"])
    assert [t.data.val_fraction for t in multi.tasks.values()] == [0.3, 0.3]
    assert [t.target.max_drop for t in multi.tasks.values()] == [0.25, 0.25]
    again = parse_multitask_spec(multi.to_dict())
    assert again.tasks == multi.tasks


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.update(tasks=[]), "non-empty list"),
    (lambda r: r["tasks"][1].update(name="digits4"), "given to two tasks"),
    (lambda r: r["tasks"][0].update(name="trials"), "folder name"),
    (lambda r: r["tasks"][0].update(name="Summary.json"), "folder name"),
    (lambda r: r["tasks"][1].update(name="DIGITS4"), "given to two tasks.*differing in case"),
    (lambda r: r["tasks"][0].update(name="a/b"), "folder name"),
    (lambda r: r["tasks"][0].update(space={}), "unknown key 'space'.*shared"),
    (lambda r: r["tasks"][0].pop("data"), "digits4.*missing required key 'data'"),
    (lambda r: r["tasks"][1]["data"].update(image_size=4), "task digits10: data.image_size must be >= 8"),
    (lambda r: r["tasks"][1].update(target=[1]), r"tasks\[1\].target must be a mapping"),
])
def test_bad_tasks_are_refused_in_one_line_naming_the_task(mutate, message):
    raw = _two_tasks()
    mutate(raw)
    with pytest.raises(SpecError, match=message) as error:
        parse_multitask_spec(raw)
    assert "\n" not in str(error.value)


def test_tailor_takes_one_task_and_search_loads_either(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(_two_tasks()))
    with pytest.raises(SpecError, match="raytailor search"):
        load_spec(path)
    assert isinstance(load_search_spec(path), MultiTaskSpec)
    assert not isinstance(load_search_spec(DEMO), MultiTaskSpec)
