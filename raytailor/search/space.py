"""A spec's ``space`` as an Optuna define-by-run function.

Integer ranges (both bounds integers, no ``log``/float ``step``) become int distributions,
other ranges floats, ``choices`` categoricals. A conditional entry (``when``) is sampled only
when its condition holds; otherwise its default is returned as a constant, so every trial's
config has the same keys (TensorBoard's HParams table needs that).
"""

from __future__ import annotations

from typing import Any

from raytailor.spec import ParamSpec, sampling_order


def is_integer_range(param: ParamSpec) -> bool:
    """Both bounds (and the step, if any) written as integers in the spec."""
    return all(isinstance(v, int) for v in (param.low, param.high)) and isinstance(param.step, (int, type(None)))


def condition_holds(param: ParamSpec, values: dict[str, Any]) -> bool:
    for other, expected in (param.when or {}).items():
        allowed = expected if isinstance(expected, list) else [expected]
        if values.get(other) not in allowed:
            return False
    return True


def sample(trial: Any, name: str, param: ParamSpec) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(name, param.choices)
    if is_integer_range(param):
        step = int(param.step) if param.step is not None else 1
        return trial.suggest_int(name, param.low, param.high, step=step, log=param.log)
    return trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)


def distribution(param: ParamSpec) -> Any:
    """The Optuna distribution ``sample`` draws ``param`` from."""
    import optuna

    if param.choices is not None:
        return optuna.distributions.CategoricalDistribution(param.choices)
    if is_integer_range(param):
        step = int(param.step) if param.step is not None else 1
        return optuna.distributions.IntDistribution(param.low, param.high, step=step, log=param.log)
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def sampled_params(space: dict[str, ParamSpec], config: dict[str, Any]) -> dict[str, Any]:
    """The values of ``config`` that were sampled: the entries whose condition held."""
    values: dict[str, Any] = {}
    for name in sampling_order(space):
        if condition_holds(space[name], values):
            values[name] = config[name]
    return values


class DefineByRun:
    """``f(optuna_trial) -> constants``: samples active entries, returns defaults of inactive ones.

    A class rather than a closure so that Ray can pickle the searcher with it. ``defaults``
    gives the value of an inactive entry without its own ``default``.
    """

    def __init__(self, space: dict[str, ParamSpec], defaults: dict[str, Any]) -> None:
        self.space = space
        self.defaults = defaults

    def __call__(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for name in sampling_order(self.space):
            param = self.space[name]
            if condition_holds(param, values):
                values[name] = sample(trial, name, param)
            else:
                constants[name] = param.default if param.default is not None else self.defaults.get(name)
                values[name] = constants[name]
        return constants
