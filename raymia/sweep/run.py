"""Run a sweep: Ray Tune schedules the trials, Optuna searches the Pareto front.

Ray is imported here (lazily, in the functions that need it) and in the worker
(`raymia.sweep.worker`); the data set travels once through Ray's object store; a driver-side
callback (`raymia.sweep.recorder`) writes every finished or failed trial as it lands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raymia.data.datasets import Pool, load_pool
from raymia.errors import ConfigError, DataError, SweepStopped, directory_problem, show_path
from raymia.results.rows import compact_trials, load_results, recorded_table
from raymia.sweep.capacity import sweep_capacity
from raymia.sweep.disk import disk_full
from raymia.sweep.journal import JOURNAL_FILE, STUDY_NAME, check_journal, finite_optuna_search
from raymia.sweep.moved import alias_old_paths
from raymia.sweep.recorder import make_recorder
from raymia.sweep.reference_tasks import trial_resources
from raymia.sweep.scheduler import fifo_scheduler
from raymia.sweep.settings import SETTINGS_FILE, SweepSettings, check_settings, save_settings
from raymia.sweep.space import SearchSpace, load_space
from raymia.sweep.storage import is_uri, mirroring, open_sweep
from raymia.sweep.window import trial_window
from raymia.sweep.worker import check_driver_gpus, trainable, worker_runtime_env
from raymia.trial.config import TrialConfig
from raymia.trial.runner import prepare_data

__all__ = ["TUNE_NAME", "SpaceDraw", "make_sampler", "run_sweep"]

#: Ray Tune's experiment state inside a sweep directory (what Tuner.restore reads).
TUNE_NAME = "tune"
#: The result columns in Tune's progress table (Tune keeps these and the objectives).
PROGRESS_COLUMNS = ("test_acc", "adv", "dtc_adv")


def _trial_dirname(trial: Any) -> str:
    # Tune's default names every parameter in the directory name; the id is enough.
    return f"trial_{trial.trial_id}"


def _param_space(
    space: SearchSpace, search: str, spread: list[str] | None = None
) -> dict[str, Any]:
    """Return Tune's param_space. A grid lists its points and seeds; a search's holds constants
    only (the trial settings, the replicate seeds, the columns whose spread over the seeds a
    row keeps): its mechanisms come from Optuna's define-by-run draw (`SpaceDraw`)."""
    from ray import tune

    trial = {k: v for k, v in space.trial.items()}
    if search == "grid":
        points = space.grid if space.grid is not None else [{}]
        fixed = {n: args for n, (kind, args) in space.mechanisms.items() if kind == "fixed"}
        return {
            "trial": trial,
            "seed": tune.grid_search(space.seeds),
            "mechanisms": tune.grid_search([{**fixed, **p} for p in points]),
        }
    return {"trial": trial, "seeds": list(space.seeds), "spread": list(spread or [])}


class SpaceDraw:
    """Optuna's define-by-run space for Ray Tune's OptunaSearch: one trial's mechanisms, drawn
    by `SearchSpace.draw`, as Tune config keys ``mechanisms/<name>`` (a plain class, so Tune
    can pickle the searcher into its experiment state)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Draw one configuration; return every mechanism setting it runs (0 where off)."""
        return {f"mechanisms/{name}": value for name, value in self.space.draw(trial).items()}


def make_sampler(search: str, sampler: str, samples: int, seed: int) -> Any:
    """Return the Optuna sampler of a search, fitted to its budget of `samples` trials.

    - random: `RandomSampler`, drawing from the same conditional space as the others;
    - tpe (the default): multi-objective TPE with `n_startup_trials` = clamp(samples // 4, 4,
      10) random trials before it models (Optuna's default, 10, would leave a 16-trial sweep 6
      modelled trials) and the constant liar (running trials count as bad results, so trials
      asked at once do not crowd one point). TPE models each strength from the trials where it
      was drawn, so it fits the conditional space;
    - nsga2: NSGA-II with a population of clamp(samples // 4, 4, 50) (Optuna's 50 would draw
      every trial of a 16-trial sweep at random). NSGA-II evolves only the parameters every
      trial has (the switches); it draws the conditional strengths at random.
    """
    import optuna

    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler == "nsga2":
        # Optuna's NSGA-II, resumable by Tune
        from raymia.sweep.sampler import PicklableNSGAIISampler

        return PicklableNSGAIISampler(population_size=min(max(samples // 4, 4), 50), seed=seed)
    return optuna.samplers.TPESampler(
        n_startup_trials=min(max(samples // 4, 4), 10), constant_liar=True, seed=seed
    )


def _searcher(settings: SweepSettings, space: SearchSpace, out_dir: Path, max_concurrent: int):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search import ConcurrencyLimiter

    objectives = settings.objective_list()
    sampler = make_sampler(
        settings.search, settings.sampler, settings.samples, settings.sampler_seed
    )
    storage = JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_FILE)))
    searcher = finite_optuna_search(
        space=SpaceDraw(space),
        metric=[o.column for o in objectives],
        mode=[o.direction for o in objectives],
        sampler=sampler,
        study_name=STUDY_NAME,
        storage=storage,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


#: Ray settings of a local Ray the sweep starts itself. Ray starts one idle worker per CPU when
#: the first driver connects, and its ``ray.init`` waits for them; they carry no runtime_env,
#: and every worker of a sweep carries one (the job's `worker_runtime_env`, and Tune gives its
#: trial actors their own), so Ray never hands them a trial: they only compete for the CPUs
#: while the trials' own workers start. (`benchmarks/quick_start.py` measures the start.)
OWN_RAY_SYSTEM_CONFIG = {"prestart_worker_first_driver": False}


def _init_ray(settings: SweepSettings) -> tuple[bool, str | None]:
    """Connect to (or start) Ray; return (whether this call must shut it down, its temp dir)."""
    import ray

    if ray.is_initialized():
        return False, None
    # every worker imports the installed raymia, whatever folder the driver runs in
    ray_init = {**settings.ray_init}
    ray_init["runtime_env"] = worker_runtime_env(ray_init.get("runtime_env"))
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True, **ray_init)
        return True, None
    # A local Ray of our own: its own temp dir, no dashboard, nothing shared with other Rays.
    temp_dir = tempfile.mkdtemp(prefix="raymia-ray-", dir="/tmp")
    ray_init["_system_config"] = {**OWN_RAY_SYSTEM_CONFIG, **ray_init.get("_system_config", {})}
    ray.init(
        _temp_dir=temp_dir,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        **ray_init,
    )
    return True, temp_dir


def _load_data(space: SearchSpace) -> Pool:
    """Return the data set the space's trials draw from, once every trial of the space could
    run on it: what none could (splits, reference set or canaries too large for the data set)
    is refused in one line (ConfigError naming the space, or DataError for data that cannot be
    loaded) before Ray starts or DIR is written, not once per trial (sizes do not depend on the
    seed or the mechanisms)."""
    trial = TrialConfig.model_validate(space.trial)
    pool = load_pool(trial.dataset, trial.data_root, trial.download)
    try:
        prepare_data(trial, pool)
    except DataError as err:
        raise ConfigError(f"{space.path}: trial: {err}") from None
    return pool


def run_sweep(settings: SweepSettings, resume: bool = False) -> Any:
    """Run (or resume) a sweep and return the results DataFrame.

    Validation happens before anything is written: a bad space, objective or flag raises
    ConfigError and leaves an existing DIR untouched.
    """
    space = load_space(settings.space)
    check_settings(settings, space)
    pool = _load_data(space)
    # a local directory, or the staging copy of a sweep at a storage URI (`raymia.sweep.storage`)
    out_dir, mirror = open_sweep(settings.out, resume)
    if problem := directory_problem(out_dir):  # e.g. --out names a file
        raise ConfigError(f"--out {show_path(out_dir)}: {problem}")
    # a damaged trials.parquet (or, on resume, journal) fails here, naming the file, before
    # Ray starts or anything is written
    recorded = recorded_table(out_dir)
    if resume and settings.search != "grid":
        check_journal(out_dir, finished_rows=0 if recorded is None else recorded.num_rows)
    if not resume and (out_dir / SETTINGS_FILE).exists():
        raise ConfigError(
            f"--out {out_dir}: already holds a sweep; continue it with --resume {out_dir} "
            "or pick a new directory"
        )
    started_ray, temp_dir = _init_ray(settings)
    cwd = os.getcwd()
    try:
        with mirroring(mirror):  # rows reach the URI as they land, and all at the end
            return _run(settings, space, out_dir, resume, pool)
    finally:
        os.chdir(cwd)
        if started_ray:
            import ray

            ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _run(
    settings: SweepSettings, space: SearchSpace, out_dir: Path, resume: bool, pool: Pool
) -> Any:
    from ray import tune

    # what the cluster can hold (the autoscaler's node types), not only what is up now
    capacity = sweep_capacity(
        settings.cpus_per_trial, settings.gpus_per_trial, 1 + settings.reference_workers
    )
    check_driver_gpus(settings.gpus_per_trial)
    max_concurrent = settings.max_concurrent or capacity.max_concurrent

    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_settings(settings, out_dir)
    # From here the driver writes relative to DIR: the recorder and the Optuna journal, which
    # Tune pickles into its state, hold relative paths, so a moved or copied DIR resumes in
    # its new place and writes nothing to the old one (run_sweep restores the cwd).
    os.chdir(out_dir)
    # raymia's own Parquet is the record: no params/result/progress/event files per trial
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Tune's classic progress output, which takes raymia's reporter and progress callback
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune holds its finished trials to a window (their rows are recorded): bounded memory
    window = trial_window(
        metric_columns=list(PROGRESS_COLUMNS),
        parameter_columns={f"mechanisms/{m}": m for m in space.varied()} or None,
        max_report_frequency=15,
    )
    # the trial's own bundle, then one per reference worker (raymia.sweep.reference_tasks)
    resources = trial_resources(
        settings.cpus_per_trial, settings.gpus_per_trial, settings.reference_workers
    )
    # the trial's time limit travels with the trainable, whoever started Ray
    fn = tune.with_resources(
        tune.with_parameters(trainable, pool=pool, timeout=settings.trial_timeout), resources
    )
    run_config = tune.RunConfig(
        name=TUNE_NAME,
        storage_path=settings.out if is_uri(settings.out) else str(out_dir),
        callbacks=[
            make_recorder(
                Path("."),
                keep=PROGRESS_COLUMNS,
                # what the searcher is told: a grid's rows are judged by no searcher
                objectives=[]
                if settings.search == "grid"
                else [o.column for o in settings.objective_list()],
            ),
            *window.callbacks,
        ],
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        progress_reporter=window.reporter,
        verbose=1,
    )
    # Tune reads its per-trial metric files both when it restores and when fit ends
    with _sigterm_stops_gracefully(), _no_per_trial_metric_files_warning():
        _tuner(settings, space, fn, run_config, window, resume, max_concurrent).fit()
    stopped = disk_full()
    if stopped:
        raise SweepStopped(stopped)
    # the rows recorded as parts, folded into trials.parquet
    if not compact_trials(out_dir):
        import pandas as pd

        return pd.DataFrame()  # stopped before its first row: resumable like any other stop
    return load_results(out_dir)


def _tuner(
    settings: SweepSettings,
    space: SearchSpace,
    fn: Any,
    run_config: Any,
    window: Any,
    resume: bool,
    max_concurrent: int,
) -> Any:
    """Return Tune's tuner for the sweep: restored from the sweep's Tune state on a resume
    that finds one, else a new one with the sweep's searcher and FIFO scheduler."""
    from ray import tune

    experiment = f"{run_config.storage_path.rstrip('/')}/{TUNE_NAME}"
    if resume and tune.Tuner.can_restore(experiment):
        alias_old_paths()  # Tune's state may name modules as they were before the packages
        return tune.Tuner.restore(
            experiment,
            trainable=fn,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    if settings.search != "grid":
        search_alg = _searcher(settings, space, Path("."), max_concurrent)
        num_samples = settings.samples
    else:
        search_alg = None
        num_samples = 1
    spread = [o.column for o in settings.objective_list()]
    return tune.Tuner(
        fn,
        param_space=_param_space(space, settings.search, spread),
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent if search_alg is None else None,
            reuse_actors=True,
            scheduler=fifo_scheduler(window),  # Tune's FIFO, not walking finished trials
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=run_config,
    )


class _NoMetricFilesWarning(logging.Filter):
    """Drops Tune's end-of-fit warning that it found no result.json or progress.csv for its
    trials: raymia turns those per-trial files off on purpose (its rows are the record), and
    the warning lists every trial Tune still holds, one line each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to fetch metrics for")


@contextlib.contextmanager
def _no_per_trial_metric_files_warning() -> Iterator[None]:
    """Silence `_NoMetricFilesWarning`'s warning while Tune runs the sweep."""
    logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    quiet = _NoMetricFilesWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@contextlib.contextmanager
def _sigterm_stops_gracefully() -> Iterator[None]:
    """Turn SIGTERM into Tune's own graceful stop (SIGUSR1) while trials run.

    Tune saves its experiment state and tells running trials to stop on SIGINT and SIGUSR1;
    a plain SIGTERM would kill the driver mid-write. Outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGUSR1))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
