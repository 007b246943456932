"""Reference models as Ray tasks in a trial's placement group: the same models as trained
serially, a trial's request that covers them, and the setting's checks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from helpers.local_ray import local_ray

from raymia.cli import main
from raymia.data.datasets import Split
from raymia.sweep.capacity import NodeType, capacity_from_node_types
from raymia.sweep.reference_tasks import trial_bundles, trial_resources
from raymia.sweep.settings import SweepSettings, load_settings, save_settings
from raymia.trial.config import TrialConfig
from raymia.trial.reference_models import train_online_models, train_reference_models

# Dropout and BatchNorm: the rebuilt model needs the mechanisms' architecture and the
# running statistics (buffers), not the parameters alone.
CONFIG = {
    "dataset": "digits",
    "epochs": 2,
    "norm": "batch",
    "mechanisms": {"dropout": 0.3, "label_smoothing": 0.1},
}


def _models(splits, config: TrialConfig) -> list[torch.nn.Module]:
    """Two offline and two online reference models of `config` on `splits`."""
    sizes = {"n_trained": len(splits.members), "n_held_out": len(splits.held_out)}
    offline = train_reference_models(config, splits.info, splits.reference, 2, **sizes)
    members, non = splits.members, splits.non_members
    scored = Split(
        torch.cat([members.x, non.x]),
        torch.cat([members.y, non.y]),
        np.r_[members.indices, non.indices],
    )
    online = train_online_models(config, splits.info, scored, splits.reference, 2, **sizes)
    return [*offline, *online.models]


def _states(models: list[torch.nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models]


def _assert_bitwise_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) == 4
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), name  # bit for bit, not within a tolerance


@pytest.mark.slow
def test_ray_tasks_in_the_trials_bundles_train_the_same_models_bit_for_bit(small_digits):
    """Serially in this process (1 torch thread, as conftest sets) and as Ray tasks in bundles
    1 and 2 of the placement group a trial runs in (1 thread each, `BundleRunner`): the same
    parameters and buffers, bit for bit, for offline and online reference models."""
    import ray
    from ray import cloudpickle
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    config = TrialConfig.model_validate(CONFIG)
    # 1 thread, as each bundle's worker trains (an earlier test may have left torch with more:
    # run_trial sets the process's threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = _states(_models(small_digits, config))
    finally:
        torch.set_num_threads(threads)

    def trial(splits, config):  # bundle 0, as Tune runs a trial (child tasks captured)
        from raymia.sweep.reference_tasks import in_trial_placement_group
        from raymia.trial import reference_models as reference

        with in_trial_placement_group():
            runner = reference._runner.get()
            models = _models(splits, config)
        return runner.bundles, _states(models)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the trial below
    with local_ray(num_cpus=2):
        group = placement_group([{"CPU": 0.5}] * 3)
        ray.get(group.ready())
        try:
            task = ray.remote(trial).options(
                num_cpus=0.5,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, 0, placement_group_capture_child_tasks=True
                ),
            )
            bundles, in_tasks = ray.get(task.remote(small_digits, config))
        finally:
            remove_placement_group(group)
    assert bundles == [1, 2]
    _assert_bitwise_equal(in_tasks, serial)


def _settings(*flags: str) -> SweepSettings:
    from raymia.cli import build_parser
    from raymia.sweep.command import settings_from_args

    return settings_from_args(build_parser().parse_args(["sweep", *flags]))[0]


def test_a_trial_with_reference_workers_asks_tune_for_a_bundle_each():
    settings = _settings("--reference-workers", "2", "--gpus-per-trial", "0.25")
    resources = trial_resources(
        settings.cpus_per_trial, settings.gpus_per_trial, settings.reference_workers
    )
    assert resources.bundles == [{"CPU": 1.0, "GPU": 0.25}] * 3
    assert resources.required_resources == {"CPU": 3.0, "GPU": 0.75}
    # without reference workers a trial asks for its own resources, as before
    assert trial_resources(1.0, 0.0, 0) == {"cpu": 1.0, "gpu": 0.0}
    assert trial_bundles(2.0, 0.0, 1) == [{"CPU": 2.0}, {"CPU": 2.0}]


def test_capacity_counts_the_whole_request_of_a_trial():
    node = [NodeType("node", {"CPU": 6.0, "GPU": 1.0}, 1)]
    assert capacity_from_node_types(node, 1, 0).max_concurrent == 6
    assert capacity_from_node_types(node, 1, 0, bundles=3).max_concurrent == 2
    assert capacity_from_node_types(node, 1, 0.25, bundles=2).max_concurrent == 2
    with pytest.raises(Exception, match=r"--reference-workers 6: a trial needs \{CPU: 7"):
        capacity_from_node_types(node, 1, 0, bundles=7)


def test_reference_workers_are_saved_and_fixed_on_resume(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    settings = _settings("--space", str(space), "--out", str(tmp_path), "--reference-workers", "3")
    assert settings.reference_workers == 3
    save_settings(settings, tmp_path)
    assert json.loads((tmp_path / "sweep.json").read_text())["reference_workers"] == 3
    assert load_settings(tmp_path).reference_workers == 3
    code = main(["sweep", "--resume", str(tmp_path), "--reference-workers", "1"])
    assert code == 2 and "--reference-workers cannot change on resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("65", "--reference-workers 65: expected an integer from 0 to 64"),
        ("-1", "--reference-workers -1: expected an integer from 0 to 64"),
        ("two", "argument --reference-workers: invalid int value: 'two'"),
        ("1.5", "argument --reference-workers: invalid int value: '1.5'"),
    ],
)
def test_bad_reference_workers_are_one_line_and_exit_2(tmp_path, capsys, value, message):
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    out = tmp_path / "out"
    code = main(["sweep", "--space", str(space), "--out", str(out), "--reference-workers", value])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # refused before anything was written


def test_reference_workers_read_back_from_sweep_json_are_checked(tmp_path):
    (tmp_path / "space.yaml").write_text("mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    settings = {"space": "space.yaml", "out": ".", "reference_workers": "2"}
    (tmp_path / "sweep.json").write_text(json.dumps(settings))
    with pytest.raises(Exception, match=r"reference_workers = '2': expected int"):
        load_settings(tmp_path)


def test_reference_workers_for_trials_without_reference_models_are_refused(tmp_path, capsys):
    # each trial would hold two bundles of CPUs that nothing uses
    space = tmp_path / "space.yaml"
    space.write_text(
        "trial: {attacks: {shadow_calibration: false}}\n"
        "mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    out = tmp_path / "out"
    code = main(["sweep", "--space", str(space), "--out", str(out), "--reference-workers", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--reference-workers 2: " in err and "trains no reference models" in err
    assert not out.exists()
