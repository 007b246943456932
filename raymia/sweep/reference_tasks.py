"""Reference models on Ray actors inside a sweep trial's own placement group.

With ``--reference-workers P`` (`SweepSettings.reference_workers`) each trial asks Tune for a
placement group of 1 + P bundles, each the size of the trial's own ({CPU: --cpus-per-trial,
GPU: --gpus-per-trial}; `trial_resources`): bundle 0 runs the trial, bundles 1..P its reference
models, so every reference model trains on what the target trains on and Tune's accounting of
the cluster stays true (the sweep's capacity counts every bundle too,
`raymia.sweep.capacity.sweep_capacity`). Without reference workers a trial asks for its own
resources only, as before, and trains its reference models itself.

In the trial, `in_trial_placement_group` hands `raymia.trial.reference_models.train_jobs` a
`BundleRunner`: one Ray actor per reference bundle, started with the trial; each job trains as
an actor task in a free bundle (one per bundle at a time; the next job goes to the first bundle
that frees), with torch's threads set to the bundle's CPUs and under what is left of the
trial's time limit, and returns its weights (a state_dict of CPU tensors), which are loaded
into a model built the same way (`raymia.trial.reference_models.load_trained`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from raymia.trial.reference_models import TrainingJob

__all__ = [
    "BundleRunner",
    "in_trial_placement_group",
    "trial_bundles",
    "trial_resources",
]


def trial_bundles(cpus: float, gpus: float, workers: int) -> list[dict[str, float]]:
    """Return one trial's resource request as placement-group bundles: its own {CPU, GPU}, then
    one bundle of the same size per reference worker (amounts of 0 left out)."""
    bundle = {name: float(v) for name, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}
    return [dict(bundle) for _ in range(1 + workers)]


def trial_resources(cpus: float, gpus: float, workers: int) -> Any:
    """Return the resources Tune's `tune.with_resources` gives each trial: ``{"cpu", "gpu"}``
    without reference workers (the trial alone), else a `tune.PlacementGroupFactory` of
    :func:`trial_bundles` (bundle 0 the trial, bundles 1..workers its reference models)."""
    if workers == 0:
        return {"cpu": cpus, "gpu": gpus}
    from ray import tune

    return tune.PlacementGroupFactory(trial_bundles(cpus, gpus, workers))


class _BundleWorker:
    """A Ray actor in one bundle: imports the training code when it starts and trains one job
    per call with torch's intra-op threads set to its bundle's CPUs."""

    def __init__(self, threads: int) -> None:
        import torch

        from raymia.trial import reference_models  # noqa: F401 (torch and the training code, up front)

        torch.set_num_threads(threads)

    def ready(self) -> bool:
        """Return True once the actor has started (its imports done)."""
        return True

    def train(
        self,
        config: Any,
        info: Any,
        train: Any,
        held_out: Any,
        seed_offset: int,
        device_type: str,
        seconds_left: float | None,
    ) -> dict[str, torch.Tensor]:
        """Train one job (`raymia.trial.reference_models.train_job`) under the trial's time limit
        `seconds_left` (None: no limit); return the model's state_dict as CPU tensors."""
        import torch

        from raymia import deadline
        from raymia.trial.reference_models import TrainingJob, train_job

        deadline.start(seconds_left)
        try:
            job = TrainingJob(config, info, train, held_out, seed_offset)
            model = train_job(job, torch.device(device_type))
        finally:
            deadline.clear()
        return {name: value.detach().cpu() for name, value in model.state_dict().items()}


@functools.cache
def _remote_worker() -> Any:
    import ray

    return ray.remote(_BundleWorker)


class BundleRunner:
    """Trains jobs in the bundles `bundles` of `placement_group` (a
    `raymia.trial.reference_models.JobRunner`): one Ray actor per bundle, holding the bundle's CPUs
    and GPUs, with torch's threads set to the bundle's CPUs; each job one actor task, one per
    bundle at a time, the next job to the first bundle that frees.

    Actors rather than plain tasks: Ray replaces an idle task worker process after a few
    seconds, so plain tasks paid the worker's start (torch's import, 2.5-4 s) at every trial.
    `start` creates the actors, which then start while the trial trains its target; `close`
    ends them.
    """

    def __init__(self, placement_group: Any, bundles: Sequence[int]) -> None:
        self.placement_group = placement_group
        self.bundles = list(bundles)
        if not self.bundles:
            raise ValueError("a BundleRunner needs at least one bundle")
        self._workers: list[Any] | None = None

    def start(self) -> list[Any]:
        """Create the bundles' actors (once); return them."""
        if self._workers is None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            specs = self.placement_group.bundle_specs
            self._workers = [
                _remote_worker()
                .options(
                    num_cpus=specs[b].get("CPU", 0),
                    num_gpus=specs[b].get("GPU", 0),
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=self.placement_group, placement_group_bundle_index=b
                    ),
                )
                .remote(max(1, int(specs[b].get("CPU", 1))))
                for b in self.bundles
            ]
        return self._workers

    def close(self) -> None:
        """End the bundles' actors (a later call starts new ones)."""
        import ray

        for worker in self._workers or []:
            ray.kill(worker)
        self._workers = None

    def __call__(
        self, jobs: Sequence[TrainingJob], device: torch.device | None = None
    ) -> list[nn.Module]:
        """Train every job in the bundles; return their models in order, on `device` (default:
        each config's), in eval mode. The first job that fails ends the actors and its error is
        raised here (a job's TrainingDiverged or TrialTimeout is still one)."""
        import ray
        import torch

        from raymia import deadline
        from raymia.data.datasets import Split
        from raymia.trial.reference_models import load_trained
        from raymia.trial.train import resolve_device

        workers = self.start()
        stored: dict[int, Any] = {}

        def put(value: Any) -> Any:  # each config and split goes to the object store once
            if id(value) not in stored:
                # a split travels from the host: the trial's copy may sit on its accelerator,
                # and each actor moves it to its own device once
                host = value.to(torch.device("cpu")) if isinstance(value, Split) else value
                stored[id(value)] = ray.put(host)
            return stored[id(value)]

        free = list(range(len(workers)))
        waiting = list(enumerate(jobs))[::-1]
        running: dict[Any, tuple[int, int]] = {}
        states: dict[int, dict[str, torch.Tensor]] = {}
        try:
            while waiting or running:
                while waiting and free:
                    index, job = waiting.pop()
                    worker = free.pop(0)
                    ref = workers[worker].train.remote(
                        put(job.config),
                        put(job.info),
                        put(job.train),
                        put(job.held_out),
                        job.seed_offset,
                        (device or resolve_device(job.config.device)).type,
                        deadline.remaining(),
                    )
                    running[ref] = (index, worker)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    index, worker = running.pop(ref)
                    states[index] = ray.get(ref)
                    free.append(worker)
        except BaseException:
            self.close()  # stops the jobs still running
            raise
        return [load_trained(job, states[i], device) for i, job in enumerate(jobs)]


@contextmanager
def in_trial_placement_group() -> Iterator[None]:
    """Within the block, `raymia.trial.reference_models.train_jobs` trains its jobs on Ray actors in
    bundles 1.. of the placement group this trial runs in, when it has more bundles than the
    trial's own (a sweep with --reference-workers); otherwise nothing changes. Outside Ray
    (a trial run in-process) it asks Ray nothing: Ray's API would start a Ray of its own."""
    import ray
    from ray.util import get_current_placement_group

    from raymia.trial.reference_models import training_jobs_run_by

    group = get_current_placement_group() if ray.is_initialized() else None
    count = len(group.bundle_specs) if group is not None else 0
    if count < 2:
        yield
        return
    runner = BundleRunner(group, range(1, count))
    runner.start()  # the actors start while the trial trains its target
    try:
        with training_jobs_run_by(runner):
            yield
    finally:
        runner.close()
