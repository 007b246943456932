"""The sweep engine: Ray Tune schedules trials, Optuna searches the Pareto front.

This is the only module that imports Ray. Each Tune trial is a plain call of `run_trial`;
the data set travels once through Ray's object store; a driver-side callback writes every
finished (or failed) trial to DIR/trials.parquet as it lands.

A sweep directory holds:
    sweep.json       the resolved settings (what --resume reads back)
    trials.parquet   one row per trial (raymia.results)
    scores/          per-trial per-sample scores
    optuna.journal   the Optuna study (open it with optuna-dashboard)
    tune/            Ray Tune's experiment state (what Tuner.restore reads)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, TrialConfig
from .mechanisms.registry import dp_sgd_precedence
from .pareto import Objective, parse_objectives
from .results import TrialsWriter, load_results, write_scores
from .space import SearchSpace, load_space

SETTINGS_FILE = "sweep.json"
JOURNAL_FILE = "optuna.journal"
TUNE_NAME = "tune"
STUDY_NAME = "raymia"


@dataclass
class SweepSettings:
    """Everything a sweep needs, resolved from the space file and the flags."""

    space: str
    out: str
    samples: int = 16
    search: str = "optuna"
    sampler: str = "nsga2"
    objectives: str = "acc:max,adv:min,dtc_adv:min"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None
    sampler_seed: int = 0
    max_failures: int = 1
    ray_init: dict[str, Any] = field(default_factory=dict)

    def objective_list(self) -> list[Objective]:
        """Return the parsed objectives."""
        return parse_objectives(self.objectives)


def check_settings(settings: SweepSettings, space: SearchSpace) -> None:
    """Raise ConfigError (one line) for any setting that cannot work, before anything runs."""
    if settings.search not in ("optuna", "grid", "random"):
        raise ConfigError(f"--search {settings.search}: expected optuna, grid or random")
    if settings.sampler not in ("nsga2", "tpe"):
        raise ConfigError(f"--sampler {settings.sampler}: expected nsga2 or tpe")
    if settings.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {settings.cpus_per_trial}: expected a number > 0")
    if settings.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial {settings.gpus_per_trial}: expected a number >= 0")
    if settings.gpus_per_trial > 1 and settings.gpus_per_trial != int(settings.gpus_per_trial):
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial}: above 1 it must be a whole number"
        )
    if settings.samples < 1:
        raise ConfigError(f"--samples {settings.samples}: expected a positive integer")
    if settings.max_concurrent is not None and settings.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent {settings.max_concurrent}: expected >= 1")
    try:
        objectives = settings.objective_list()
    except ValueError as err:
        raise ConfigError(f"--objectives: {err}") from None
    from .attacks import REGISTRY as ATTACKS
    from .trial import objective_columns

    trial = TrialConfig.model_validate(space.trial)
    dtc_on = trial.dtc.enabled
    known = objective_columns()
    for objective in objectives:
        if objective.column not in known:
            raise ConfigError(
                f"--objectives {settings.objectives}: unknown objective {objective.column!r}; "
                f"expected one of: acc, {', '.join(sorted(known))}"
            )
        if objective.column.startswith("dtc_") and not dtc_on:
            raise ConfigError(
                f"--objectives: {objective.column} needs DtC, but {space.path} sets "
                "trial.dtc.enabled: false"
            )
        if objective.column.endswith("_excess") and not trial.attacks.n_permutations:
            raise ConfigError(
                f"--objectives: {objective.column} is measured against the permutation null, "
                f"but {space.path} sets trial.attacks.n_permutations: 0"
            )
        for attack in ATTACKS.values():
            option = attack.reference_models
            if option and objective.column in attack.columns():
                if not getattr(trial.attacks, option):
                    raise ConfigError(
                        f"--objectives: {objective.column} needs trial.attacks.{option}"
                    )
    if settings.search == "optuna":
        if space.is_grid():
            raise ConfigError(
                f"{space.path}: a grid space lists its configurations; run it with --search grid"
            )
        if not space.varied():
            raise ConfigError(
                f"{space.path}: no mechanism has a distribution, so Optuna has nothing to "
                "search; use --search grid or give a mechanism {uniform: [lo, hi]}"
            )
    if settings.search == "random" and space.is_grid():
        raise ConfigError(
            f"{space.path}: a grid space lists its configurations; run it with --search grid"
        )
    if settings.search == "grid" and not space.is_grid() and space.varied():
        raise ConfigError(
            f"{space.path}: --search grid needs a space with a grid: list (this one has "
            "distributions); use --search optuna or random"
        )


# --- the trial side (runs inside a Ray worker) ---------------------------------------------


def _trial_config(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return the TrialConfig dict for one Tune trial's parameters, and what DP switched off
    (a trial that samples DP-SGD on switches off the mechanisms it cannot run with)."""
    mechanisms, switched_off = dp_sgd_precedence(params["mechanisms"])
    config = {**params["trial"], "seed": params["seed"], "mechanisms": mechanisms}
    return config, switched_off


def _encode_scores(scores: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **scores)
    return buffer.getvalue()


def _decode_scores(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as data:
        return {name: data[name] for name in data.files}


def trainable(params: dict[str, Any], pool: Any = None) -> None:
    """Tune's function trainable: run one trial and report its row (or raise on failure)."""
    import ray
    import torch
    from ray import tune

    from .trial import run_trial

    config, switched_off = _trial_config(params)
    resources = ray.get_runtime_context().get_assigned_resources()
    gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
    # Ray's GPUs are logical: without CUDA the trial falls back to the CPU.
    config["device"] = "cuda" if gpu else "cpu"
    threads = max(1, int(resources.get("CPU", 1)))
    started = time.time()
    row = run_trial(config, pool, threads=threads)
    row["started_at"], row["finished_at"] = started, time.time()
    row["node_id"] = ray.get_runtime_context().get_node_id()
    scores = row.pop("scores")
    row["switched_off"] = ",".join(switched_off)
    row["scores_npz"] = _encode_scores(scores)
    tune.report(row)


# --- the driver side ------------------------------------------------------------------------


def _error_status(error: BaseException | None) -> tuple[str, str]:
    """Return (status, one-line message) for a trial's exception."""
    if error is None:
        return "failed", "unknown error"
    text = "".join(traceback.format_exception_only(type(error), error))
    cause = error
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    kind = type(cause).__name__
    status = "diverged" if "TrainingDiverged" in (kind + text) else "failed"
    last = [line for line in text.strip().splitlines() if line.strip()]
    message = last[-1].strip() if last else kind
    if len(message) > 500:
        message = message[:497] + "..."
    return status, message


def _trial_exception(trial: Any) -> BaseException | None:
    """Return the exception a failed Tune trial raised, read from its local error file.

    Tune writes the pickled error next to the trial before telling callbacks, but syncs it to
    the storage path (where `Trial.get_pickled_error` looks) only later.
    """
    from ray import cloudpickle

    path = trial.pickled_error_file
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except Exception:  # an unreadable pickle: the status still says failed
        return None


def _config_columns(params: dict[str, Any]) -> dict[str, Any]:
    config, _ = _trial_config(params)
    return TrialConfig.model_validate(config).flat()


def _make_callback(out_dir: Path):
    from ray import tune
    from ray.tune.result import AUTO_RESULT_KEYS

    # Tune's own bookkeeping in every result; the rest is the trial's row
    tune_keys = set(AUTO_RESULT_KEYS) | {
        "done",
        "trial_id",
        "experiment_tag",
        "should_checkpoint",
        "experiment_id",
    }

    class ResultsRecorder(tune.Callback):
        """Writes each trial's row to trials.parquet once Tune has finished the trial.

        The row arrives with the trial's result but is written at completion, after Tune has
        told the searcher (Optuna) the trial is COMPLETE: a row on disk therefore always has a
        finished trial in the journal and in Tune's state, and a sweep stopped in between
        re-runs that trial instead of keeping a row whose trial Optuna still thinks RUNNING.
        It keeps no rows across runs: Tuner.restore revives the callback pickled with the
        first run, so every write starts from what is on disk.
        """

        def __init__(self):
            self.pending: dict[str, tuple[dict, bytes | None]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = {k: v for k, v in result.items() if k not in tune_keys}
            blob = row.pop("scores_npz", None)
            result.pop("scores_npz", None)  # keep the big bytes out of Tune's state
            row["trial_id"] = trial.trial_id
            row["node_ip"] = result.get("node_ip")
            self.pending[trial.trial_id] = (row, blob)

        def on_trial_complete(self, iteration, trials, trial, **info):
            row, blob = self.pending.pop(trial.trial_id, (None, None))
            if row is None:
                return
            if blob is not None:
                write_scores(out_dir, trial.trial_id, _decode_scores(blob))
            TrialsWriter(out_dir).add(row)

        def __getstate__(self):
            return {}  # results in flight belong to this run only

        def __setstate__(self, state):
            self.pending = {}

        def on_trial_error(self, iteration, trials, trial, **info):
            status, message = _error_status(_trial_exception(trial))
            row = {"trial_id": trial.trial_id, "status": status, "error": message}
            row.update(_config_columns(trial.config))
            TrialsWriter(out_dir).add(row)

    return ResultsRecorder()


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
    from ray.tune.search.optuna import OptunaSearch

    objectives = settings.objective_list()
    if settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=settings.sampler_seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed)
    storage = JournalStorage(JournalFileBackend(str(out_dir / JOURNAL_FILE)))
    searcher = OptunaSearch(
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
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True, **settings.ray_init)
        return True, None
    # A local Ray of our own: its own temp dir, no dashboard, nothing shared with other Rays.
    temp_dir = tempfile.mkdtemp(prefix="raymia-ray-", dir="/tmp")
    ray.init(
        _temp_dir=temp_dir,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        **settings.ray_init,
    )
    return True, temp_dir


def save_settings(settings: SweepSettings, out_dir: Path) -> None:
    """Write the resolved settings to DIR/sweep.json (atomically)."""
    path = out_dir / SETTINGS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(settings), indent=2))
    os.replace(tmp, path)


def load_settings(out_dir: Path) -> SweepSettings:
    """Read DIR/sweep.json back; raise ConfigError if it is missing or unreadable."""
    path = out_dir / SETTINGS_FILE
    try:
        data = json.loads(path.read_text())
        return SweepSettings(**data)
    except FileNotFoundError:
        raise ConfigError(f"--resume {out_dir}: no {SETTINGS_FILE}; is this a sweep dir?") from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: unreadable sweep settings ({err})") from None


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
    try:
        return _run(settings, space, out_dir, resume)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _run(settings: SweepSettings, space: SearchSpace, out_dir: Path, resume: bool) -> Any:
    import ray
    from ray import tune

    from .data import load_pool

    trial_defaults = TrialConfig.model_validate(space.trial)
    cluster_cpus = ray.cluster_resources().get("CPU", 1)
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if settings.gpus_per_trial > 0 and cluster_gpus == 0:
        raise ConfigError(
            f"--gpus-per-trial {settings.gpus_per_trial}: the Ray cluster has no GPUs"
        )
    max_concurrent = settings.max_concurrent or max(1, int(cluster_cpus // settings.cpus_per_trial))
    pool = load_pool(trial_defaults.dataset, trial_defaults.data_root, trial_defaults.download)

    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_settings(settings, out_dir)
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    fn = tune.with_resources(tune.with_parameters(trainable, pool=pool), resources)
    run_config = tune.RunConfig(
        name=TUNE_NAME,
        storage_path=str(out_dir),
        callbacks=[_make_callback(out_dir)],
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
            search_alg = _searcher(settings, out_dir, max_concurrent)
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


def expected_trials(settings: SweepSettings) -> int:
    """Return how many trials the sweep runs when it is not interrupted."""
    if settings.search != "grid":
        return settings.samples
    space = load_space(settings.space)
    return len(space.grid if space.grid is not None else [{}]) * len(space.seeds)


def check_journal(out_dir: Path, finished_rows: int = 0) -> None:
    """Raise ConfigError naming the file when DIR's Optuna journal is damaged.

    Optuna skips a journal line it cannot parse and reads a truncated journal as a shorter
    study; either would quietly lose trials on resume, so every line must be JSON and the
    study must know at least as many finished trials as trials.parquet has rows.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = out_dir / JOURNAL_FILE
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
            except ValueError:
                raise ConfigError(
                    f"{path}: damaged Optuna journal (line {number} is not a JSON record)"
                ) from None
    try:
        study = optuna.load_study(
            study_name=STUDY_NAME, storage=JournalStorage(JournalFileBackend(str(path)))
        )
    except Exception as err:  # Optuna raises many kinds for a damaged journal
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: unreadable Optuna journal ({detail})") from None
    finished = sum(t.state.is_finished() for t in study.trials)
    if finished < finished_rows:
        raise ConfigError(
            f"{path}: Optuna journal knows {finished} finished trials but trials.parquet has "
            f"{finished_rows} rows; the journal looks truncated"
        )
