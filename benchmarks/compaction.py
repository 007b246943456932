"""Benchmark: folding a sweep's recorded parts into trials.parquet, against a row-by-row fold.

A sweep directory as the recorder leaves it just before it compacts: `--rows` rows in
trials.parquet and as many one-row parts after it (about 130 columns a row, as a trial's row
has; one part in ten a retry of an earlier trial), folded twice, each in a fresh process on
its own copy: by `raymia.results.rows.compact_trials` (trials.parquet stays in Arrow, the parts are
typed a batch at a time) and by the baseline, a fold that reads every row as a Python dict (a
later row of a trial in the earlier one's place) and types them all at once (what
`compact_trials` did before). Both give the same rows. Prints each one's seconds and the peak
memory it added, then the ratios baseline / raymia last (targets: both >= 1).

    python benchmarks/compaction.py [--rows 4000]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import fresh_result, scratch

from raymia.results import rows as results

COLUMNS = 125  # metric columns of a synthetic row (about 130 with the leading ones)


def build(out: Path, rows: int) -> None:
    """Write `rows` rows to out/trials.parquet and as many one-row parts after it (one in ten
    a retry of an earlier trial)."""
    rng = np.random.default_rng(0)

    def row(i: int) -> dict:
        values = {"trial_id": f"t{i:06d}", "status": "ok", "seed": 0, "dataset": "digits"}
        values.update({f"metric_{k:03d}": float(v) for k, v in enumerate(rng.random(COLUMNS))})
        return values

    results.write_trials(out, [row(i) for i in range(rows)])
    appender = results.TrialsAppender(out, min_batch=10**9)  # no compaction while building
    for i in range(rows, 2 * rows):
        appender.add(row(i - rows if i % 10 == 0 else i))


def row_by_row(out: Path) -> None:
    """The baseline fold: every row as a Python dict, typed all at once, written."""
    rows: dict[str, dict] = {}
    parts = sorted((out / results.PARTS_DIR).glob("*.parquet"))
    for path in [out / results.TRIALS_FILE, *parts]:
        for values in pq.read_table(path).to_pylist():
            rows[values["trial_id"]] = values
    table = results._trials_table(list(rows.values()), through=len(parts))
    pq.write_table(table, out / results.TRIALS_FILE)
    for path in parts:
        path.unlink()


def measure(how: str, out: Path) -> dict:
    """Fold `out` by `how` in this process; return its seconds and the peak memory it added."""
    with open("/proc/self/statm") as statm:  # resident now, in KiB (ru_maxrss's unit)
        start_rss = int(statm.read().split()[1]) * resource.getpagesize() / 1024
    started = time.perf_counter()
    if how == "raymia":
        results.compact_trials(out)
    else:
        row_by_row(out)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "added_mb": (peak - start_rss) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # how, dir: a fresh process
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one[0], Path(args.one[1]))), flush=True)
        return
    figures = {}
    with scratch() as tmp:
        build(tmp / "built", args.rows)
        for how in ("raymia", "row-by-row"):
            copy = tmp / how
            shutil.copytree(tmp / "built", copy)
            figures[how] = fresh_result(__file__, [how, str(copy)], f"the {how} fold")
            print(
                f"{how}: {figures[how]['seconds']:.1f} s, "
                f"+{figures[how]['added_mb']:.0f} MB peak memory",
                flush=True,
            )
        same = pq.read_table(tmp / "raymia" / results.TRIALS_FILE).to_pylist() == (
            pq.read_table(tmp / "row-by-row" / results.TRIALS_FILE).to_pylist()
        )
    print(f"same rows: {same}")
    raymia, baseline = figures["raymia"], figures["row-by-row"]
    print(
        f"{args.rows} rows + {args.rows} parts, row-by-row / raymia: time "
        f"{baseline['seconds'] / raymia['seconds']:.2f}x, added memory "
        f"{baseline['added_mb'] / max(raymia['added_mb'], 1.0):.2f}x"
    )


if __name__ == "__main__":
    main()
