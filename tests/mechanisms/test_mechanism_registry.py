"""The mechanism registry is the source of truth: the config, the DP-SGD rule, the search
space and the result columns all follow it, also for a mechanism registered at runtime."""

from __future__ import annotations

from dataclasses import fields as fields_of

import pytest
import torch

from raymia.mechanisms import REGISTRY, Batch, Mechanism, Setting, register, unregister
from raymia.mechanisms.registry import LEVELS, dp_sgd_precedence, riders, settings
from raymia.sweep.space import load_space
from raymia.trial.config import ConfigError, mechanisms_model, parse_trial_config

BUILT_IN = (
    "augment",
    "input_noise",
    "cutout",
    "mixup",
    "label_smoothing",
    "confidence_penalty",
    "disturb_label",
    "distillation",
    "dropout",
    "weight_decay",
    "early_stopping",
    "adv_reg",
    "dp_noise",
)


def test_the_registry_lists_the_built_in_mechanisms_by_level():
    assert tuple(REGISTRY) == BUILT_IN
    levels = [LEVELS.index(cls.level) for cls in REGISTRY.values()]
    assert levels == sorted(levels)


def test_the_config_model_is_the_registry():
    """Every field of the Mechanisms model is a registered strength or rider, in registry
    order, with the registry's type, default, bounds and description."""
    fields = mechanisms_model().model_fields
    declared = settings()
    assert list(fields) == list(declared)
    assert list(declared)[: len(BUILT_IN) + 2][-3:] == ["dp_noise", "dp_clip", "dp_delta"]
    for name, setting in declared.items():
        field = fields[name]
        assert field.annotation is setting.type, name
        assert field.default == setting.default and type(field.default) is setting.type, name
        assert field.description == setting.description, name
        bounds = {f.name: getattr(m, f.name) for m in field.metadata for f in fields_of(m)}
        expected = {k: getattr(setting, k) for k in ("ge", "gt", "le", "lt")}
        assert bounds == {k: v for k, v in expected.items() if v is not None}, name


def test_the_row_holds_every_strength_and_rider_in_registry_order():
    row = parse_trial_config({"mechanisms": {"dropout": 0.3}}).flat()
    columns = [c for c in row if c in settings()]
    assert columns == list(settings())
    assert list(row).index("dp_accountant") < list(row).index(BUILT_IN[0])


def test_riders_and_dp_sgd_clashes_are_declared_once():
    assert riders() == {"dp_clip": "dp_noise", "dp_delta": "dp_noise"}
    assert [n for n, cls in REGISTRY.items() if cls.dp_sgd] == ["dp_noise"]
    clashing = [n for n, cls in REGISTRY.items() if cls.dp_clash]
    assert clashing == ["mixup", "distillation", "adv_reg"]
    for name in clashing:
        strength = REGISTRY[name].setting.example() * (4 if name == "distillation" else 1)
        with pytest.raises(ConfigError, match=f"mechanisms.{name} = .* cannot combine"):
            parse_trial_config({"mechanisms": {"dp_noise": 1.0, name: strength}})
    strengths = {"dp_noise": 1.0, "mixup": 0.2, "adv_reg": 1.0, "dropout": 0.1}
    kept, off = dp_sgd_precedence(strengths)
    assert off == ["mixup", "adv_reg"]
    assert kept == {"dp_noise": 1.0, "mixup": 0, "adv_reg": 0, "dropout": 0.1}
    assert dp_sgd_precedence({"mixup": 0.2}) == ({"mixup": 0.2}, [])


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_strength_bound_is_enforced(name):
    setting = REGISTRY[name].setting
    too_big = (setting.le if setting.le is not None else setting.lt) * 2 + 1
    with pytest.raises(ConfigError, match=f"mechanisms.{name}"):
        parse_trial_config({"mechanisms": {name: setting.type(too_big)}})
    with pytest.raises(ConfigError, match=f"mechanisms.{name}"):
        parse_trial_config({"mechanisms": {name: setting.type(-1)}})


@pytest.mark.parametrize(
    ("name", "level", "message"),
    [("dropout", "model", "'dropout' is taken"), ("nowhere", "everywhere", "level 'everywhere'")],
)
def test_a_name_is_registered_once_and_a_level_must_be_known(name, level, message):
    declarations = {"name": name, "level": level, "hooks": frozenset()}
    bad = type("Bad", (Mechanism,), {**declarations, "setting": Setting(float, "bad", le=1.0)})
    with pytest.raises(ValueError, match=message):
        register(bad)
    assert REGISTRY.get(name) is not bad


@pytest.mark.parametrize(
    ("hooks", "methods", "message"),
    [
        (frozenset({"batches"}), {}, r"unknown hook\(s\) \['batches'\]"),
        ("batch", {}, "hooks must be a set of hook names"),
        # a misspelt or missing hook: the method would never run
        (frozenset({"loss"}), {"transform": lambda self, batch: batch}, "overrides transform"),
        (frozenset(), {"after_epoch": lambda self, model: False}, "stopping"),
    ],
)
def test_register_refuses_hooks_the_loop_would_never_run(hooks, methods, message):
    declarations = {"name": "toy_hooks", "level": "input", "hooks": hooks, **methods}
    bad = type("Bad", (Mechanism,), {**declarations, "setting": Setting(float, "bad", le=1.0)})
    with pytest.raises(ValueError, match=message):
        register(bad)
    assert REGISTRY.get("toy_hooks") is None


def test_every_registered_mechanism_declares_the_hooks_of_its_methods():
    from raymia.mechanisms.base import HOOKS, hook_problem

    for name, cls in REGISTRY.items():
        assert hook_problem(cls) is None, name
        assert cls.hooks <= set(HOOKS)


class ToyShift(Mechanism):
    """A toy input mechanism for the tests: shifts every input by `strength`."""

    name = "toy_shift"
    level = "input"
    setting = Setting(float, "toy input shift", le=2.0)
    riders = {"toy_scale": Setting(float, "toy scale", default=1.0, ge=None, gt=0, le=4.0)}
    image_size_divisor = (8, "an eighth of the image side")
    hooks = frozenset({"batch"})
    order = 15

    def transform(self, batch: Batch) -> Batch:
        return batch.with_(x=batch.x + self.strength)


@pytest.fixture
def toy_shift():
    register(ToyShift)
    try:
        yield ToyShift
    finally:
        unregister("toy_shift")


def test_a_mechanism_registered_at_runtime_is_everywhere(toy_shift, tmp_path):
    config = parse_trial_config({"mechanisms": {"toy_shift": 0.5, "toy_scale": 2.0}})
    assert config.mechanisms.active() == {"toy_shift": 0.5}
    row = config.flat()
    assert row["toy_shift"] == 0.5 and row["toy_scale"] == 2.0
    # its declared range and its image-size bound hold, in one line each
    with pytest.raises(ConfigError, match="mechanisms.toy_shift = 3"):
        parse_trial_config({"mechanisms": {"toy_shift": 3}})
    with pytest.raises(ConfigError, match=r"expected at most 1 \(an eighth of the image side"):
        parse_trial_config({"mechanisms": {"toy_shift": 1.5}, "dataset": "digits"}, "x")
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms:\n  toy_shift: {uniform: [0.0, 1.0]}\n  toy_scale: 2.0\n")
    assert load_space(space).varied() == ["toy_shift"]
    # the training loop runs it through its hook
    batch = Batch(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 10)
    assert float(ToyShift(0.5, None).transform(batch).x.mean()) == 0.5  # type: ignore[arg-type]


def test_an_unregistered_mechanism_is_gone_again(toy_shift):
    unregister("toy_shift")
    try:
        with pytest.raises(ConfigError, match="unknown key 'mechanisms.toy_shift'"):
            parse_trial_config({"mechanisms": {"toy_shift": 0.5}})
        assert "toy_shift" not in parse_trial_config({}).flat()
    finally:
        register(ToyShift)
