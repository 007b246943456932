"""The sweep: many trials under Ray Tune, the mechanisms and strengths chosen by Optuna.

- `raymia.sweep.settings`: the settings' table (type, default, bounds, flag), checks, sweep.json;
- `raymia.sweep.space`: the search space file; `raymia.sweep.command`: `raymia sweep`;
- `raymia.sweep.storage`: a cloud --out; `raymia.sweep.cluster_config`: a cluster file's check;
- `raymia.sweep.run`: the run itself (Ray Tune, the Optuna searcher, resume);
- `raymia.sweep.worker`: one trial inside a Ray worker;
- `raymia.sweep.recorder`: the driver's record of each finished or failed trial;
- `raymia.sweep.journal`: the Optuna journal and its check before a resume;
- `raymia.sweep.sampler`: Optuna's NSGA-II, picklable (Tune saves it to resume);
- `raymia.sweep.scheduler`: Tune's FIFO trial choice, not walking finished trials;
- `raymia.sweep.window`: Tune's finished trials held to a window of the latest ones;
- `raymia.sweep.capacity`, `disk`, `reference_tasks`: what fits, a full disk, reference workers;
- `raymia.sweep.moved`: the module paths before the packages, for sweeps written then.

A sweep directory holds:
    sweep.json       the resolved settings (what --resume reads back)
    space.yaml       a copy of the search space (a moved directory resumes with it)
    trials.parquet   one row per trial (raymia.results.rows), plus trials.parts/: rows not yet
                     folded into it, one Parquet part per finished trial
    scores/          per-trial per-sample scores
    optuna.journal   the Optuna study (open it with optuna-dashboard)
    tune/            Ray Tune's experiment state (what Tuner.restore reads)

Ray is imported only in this package (`run`, `worker`, `recorder`, `journal`, `scheduler`,
`window`, `capacity`, `reference_tasks`) and by `raymia.sweep.cluster_config`, which validates
cluster files offline; the rest of raymia never imports it (`tests/test_layers.py`).
"""
