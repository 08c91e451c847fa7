"""Run a study (a grid over models x nodes x images x settings, a TOML file) on Ray; or report one.

    invert-onnx study SPEC.toml [--workers N --threads T] [--address auto|ray://HOST:10001] [--gpus-per-run G]
    invert-onnx study report STORE.sqlite [--out DIR]

Every run is a row in the spec's SQLite store; a rerun skips the rows that exist (resume), and
`study report` makes the tables (Markdown, CSV) and figure grids from the store alone.
"""
from __future__ import annotations

import sys
from pathlib import Path

from inverter.cli.options import PROG, emit, nonnegative_int, positive_float, positive_int


def add_arguments(p) -> None:
    p.add_argument("spec", help="the study's TOML file, or `report`")
    p.add_argument("store", nargs="?", type=Path, help="with `report`: the study's .sqlite store")
    p.add_argument("--store", dest="store_override", type=Path, help="write to this store instead of the spec's")
    p.add_argument("--out", type=Path, help="with `report`: output folder (default: STORE_report next to the store)")
    p.add_argument("--workers", type=nonnegative_int,
                   help="Ray workers (default: the cores / --threads, or the GPUs / --gpus-per-run); "
                        "0 runs in this process without Ray")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per worker (default: 1)")
    p.add_argument("--address", help="a Ray cluster: auto (this machine joined one with `ray start`) or "
                                     "ray://HOST:10001 (default: a local Ray started for this study)")
    p.add_argument("--gpus-per-run", type=positive_float, default=0.0, metavar="G",
                   help="GPUs each worker takes (fractions share a GPU); runs go on cuda")
    p.add_argument("--max-tries", type=positive_int, default=3,
                   help="tries of a batch whose worker dies (default: 3)")
    p.add_argument("--no-speedups", action="store_true", help="plain graph (see invert --help)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")


def run(args) -> int:
    from converters.errors import UserError

    if args.spec == "report":
        if args.store is None:
            raise UserError(f"give the store: {PROG} study report STORE.sqlite")
        from inverter.studies.report import write_report

        done = write_report(args.store, args.out)
        figures = ", ".join(str(p) for p in done["figures"]) or "none (no reconstructions)"
        emit(args, {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in done.items()},
             f"{done['rows']} runs: {done['markdown']}, {done['csv']}\nfigures: {figures}")
        return 0
    if args.store is not None:
        raise UserError(f"`{PROG} study SPEC` takes one spec; to write elsewhere use --store PATH")
    from inverter.studies.engine import Options, run_study
    from inverter.studies.spec import check, load_spec
    from inverter.studies.store import Store

    study = load_spec(args.spec)
    if args.store_override:
        study.store = args.store_override.resolve()
    if args.gpus_per_run and args.workers == 0:
        raise UserError("--gpus-per-run places Ray workers; it does not go with --workers 0")
    items = check(study)  # the whole spec, before any work
    options = Options(workers=args.workers, threads=args.threads, address=args.address,
                      gpus_per_run=args.gpus_per_run, max_tries=args.max_tries, speedups=not args.no_speedups,
                      progress=not args.quiet)
    with Store(study.store_path) as store:
        try:
            summary = run_study(items, store, options, batch=study.batch, study=study.name)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; {store.count()} finished run(s) are in {store.path}; run the same "
                  "command again to continue", file=sys.stderr)
            return 130
    line = (f"{summary['done']} run(s) done ({summary['ok']} ok, {summary['failed']} failed, {summary['diverged']} "
            f"diverged), {summary['skipped']} already in the store, {summary['runs_per_hour']:.0f} runs/hour -> "
            f"{summary['store']}\nreport: {PROG} study report {summary['store']}")
    emit(args, summary, line)
    return 0
