"""Run a sweep: Ray Tune schedules the trials, Optuna searches the Pareto front.

Ray is imported here (lazily, in the functions that need it) and in the worker
(`raymia.sweep.worker`); the data set travels once through Ray's object store; a driver-side
callback (`raymia.sweep.recorder`) writes every finished or failed trial as it lands.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import TrialConfig
from ..errors import ConfigError
from ..results import TrialsWriter, compact_trials, load_results
from ..space import SearchSpace, load_space
from .journal import JOURNAL_FILE, STUDY_NAME, check_journal, finite_optuna_search
from .recorder import make_recorder
from .settings import SETTINGS_FILE, SweepSettings, check_settings, save_settings
from .worker import check_driver_gpus, trainable, worker_runtime_env

__all__ = ["TUNE_NAME", "run_sweep"]

#: Ray Tune's experiment state inside a sweep directory (what Tuner.restore reads).
TUNE_NAME = "tune"


def _trial_dirname(trial: Any) -> str:
    # Tune's default names every parameter in the directory name; the id is enough.
    return f"trial_{trial.trial_id}"


def _param_space(space: SearchSpace, search: str) -> dict[str, Any]:
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
    mechanisms: dict[str, Any] = {}
    for name, (kind, args) in space.mechanisms.items():
        if kind == "fixed":
            mechanisms[name] = args
        elif kind == "uniform":
            mechanisms[name] = tune.uniform(*args)
        elif kind == "loguniform":
            mechanisms[name] = tune.loguniform(*args)
        elif kind == "int":
            mechanisms[name] = tune.randint(args[0], args[1] + 1)  # inclusive upper bound
        elif kind == "choice":
            mechanisms[name] = tune.choice(args)
    seed: Any = space.seeds[0] if len(space.seeds) == 1 else tune.choice(space.seeds)
    return {"trial": trial, "seed": seed, "mechanisms": mechanisms}


def _searcher(settings: SweepSettings, out_dir: Path, max_concurrent: int):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search import ConcurrencyLimiter

    objectives = settings.objective_list()
    if settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=settings.sampler_seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed)
    storage = JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_FILE)))
    searcher = finite_optuna_search(
        metric=[o.column for o in objectives],
        mode=[o.direction for o in objectives],
        sampler=sampler,
        study_name=STUDY_NAME,
        storage=storage,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


def _init_ray(settings: SweepSettings) -> tuple[bool, str | None]:
    """Connect to (or start) Ray; return (whether this call must shut it down, its temp dir)."""
    import ray

    if ray.is_initialized():
        return False, None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # every worker imports the installed raymia, whatever folder the driver runs in
    ray_init = {**settings.ray_init}
    ray_init["runtime_env"] = worker_runtime_env(ray_init.get("runtime_env"))
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True, **ray_init)
        return True, None
    # A local Ray of our own: its own temp dir, no dashboard, nothing shared with other Rays.
    temp_dir = tempfile.mkdtemp(prefix="raymia-ray-", dir="/tmp")
    ray.init(
        _temp_dir=temp_dir,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        **ray_init,
    )
    return True, temp_dir


def run_sweep(settings: SweepSettings, resume: bool = False) -> Any:
    """Run (or resume) a sweep and return the results DataFrame.

    Validation happens before anything is written: a bad space, objective or flag raises
    ConfigError and leaves an existing DIR untouched.
    """
    space = load_space(settings.space)
    check_settings(settings, space)
    out_dir = Path(settings.out).resolve()
    # a damaged trials.parquet (or, on resume, journal) fails here, naming the file, before
    # Ray starts or anything is written
    rows = TrialsWriter(out_dir).rows
    if resume and settings.search == "optuna":
        check_journal(out_dir, finished_rows=len(rows))
    if not resume and (out_dir / SETTINGS_FILE).exists():
        raise ConfigError(
            f"--out {out_dir}: already holds a sweep; continue it with --resume {out_dir} "
            "or pick a new directory"
        )
    started_ray, temp_dir = _init_ray(settings)
    cwd = os.getcwd()
    try:
        return _run(settings, space, out_dir, resume)
    finally:
        os.chdir(cwd)
        if started_ray:
            import ray

            ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _run(settings: SweepSettings, space: SearchSpace, out_dir: Path, resume: bool) -> Any:
    import ray
    from ray import tune

    from ..data import load_pool

    trial_defaults = TrialConfig.model_validate(space.trial)
    cluster_cpus = ray.cluster_resources().get("CPU", 1)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if settings.gpus_per_trial > 0 and cluster_gpus == 0:
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial}: the Ray cluster has no GPUs"
        )
    check_driver_gpus(settings.gpus_per_trial)
    max_concurrent = settings.max_concurrent or max(1, int(cluster_cpus // settings.cpus_per_trial))
    pool = load_pool(trial_defaults.dataset, trial_defaults.data_root, trial_defaults.download)

    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_settings(settings, out_dir)
    # From here the driver writes relative to DIR: the recorder and the Optuna journal, which
    # Tune pickles into its state, hold relative paths, so a moved or copied DIR resumes in
    # its new place and writes nothing to the old one (run_sweep restores the cwd).
    os.chdir(out_dir)
    # raymia's own Parquet is the record: no params/result/progress/event files per trial
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    fn = tune.with_resources(tune.with_parameters(trainable, pool=pool), resources)
    run_config = tune.RunConfig(
        name=TUNE_NAME,
        storage_path=str(out_dir),
        callbacks=[make_recorder(Path("."))],
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        progress_reporter=tune.CLIReporter(
            metric_columns=["test_acc", "adv", "dtc_adv"],
            parameter_columns={f"mechanisms/{m}": m for m in space.varied()} or None,
            max_report_frequency=15,
        ),
        verbose=1,
    )
    experiment = out_dir / TUNE_NAME
    if resume and tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(
            str(experiment),
            trainable=fn,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    else:
        if settings.search == "optuna":
            search_alg = _searcher(settings, Path("."), max_concurrent)
            num_samples = settings.samples
        else:
            search_alg = None
            num_samples = 1 if settings.search == "grid" else settings.samples
        tuner = tune.Tuner(
            fn,
            param_space=_param_space(space, settings.search),
            tune_config=tune.TuneConfig(
                search_alg=search_alg,
                num_samples=num_samples,
                max_concurrent_trials=max_concurrent if search_alg is None else None,
                reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=run_config,
        )
    with _sigterm_stops_gracefully():
        tuner.fit()
    compact_trials(out_dir)  # the rows recorded as parts, folded into trials.parquet
    return load_results(out_dir)


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
