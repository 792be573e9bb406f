"""Run the benchmarks on a broker of their own, print the table and write bench/results.md.

    $ .venv/bin/python -m bench                 # what `make bench` runs: ~8 minutes on 2 cores
    bench: Apache Kafka 4.4.0 at 127.0.0.1:20410 (bench/out/kafka)
    == produce
      produce-producer.py-1: 9.71 s
    ...
    | case | what | median | min | max | unit | ratio (same run) | target |
    ...
    bench: wrote bench/results.md
    $ .venv/bin/python -m bench --quick --only produce,consume   # 1/10 of the counts: a smoke run
    ...
    bench: wrote bench/out/results-scale-0.1.md (not bench/results.md: a partial or scaled run)
    $ .venv/bin/python -m bench --only nope
    bench: unknown case 'nope' (cases: broker, produce, consume, latency, twitter, tuning, trends)

Without KAFKA_BOOTSTRAP_SERVERS it starts Apache Kafka with the `broker` package on a free
port, in bench/out/kafka (git-ignored), and stops and wipes it at the end; with it, it uses
that broker and starts none. Exit codes: 0 every run worked (whether or not the targets were
met: benchmarks report, they do not assert), 1 a run failed, 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

from bench import cases, report

PROG = "bench"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "results.md"
DEFAULT_RUNS = 3
QUICK_SCALE = 0.1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scale_from_environment() -> float:
    text = os.environ.get("BENCH_SCALE", "").strip()
    return float(text) if text else 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=(
        "Benchmark producer.py, consumer.py and twitter-stream.py against bare kafka-python loops "
        "and kcat, on a local broker; write the table to bench/results.md."))
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"runs of each command; figures are their median, min and max (default {DEFAULT_RUNS})")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply the counts and the latency run's duration (env BENCH_SCALE, default 1: "
                             "the reference sizes)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: --scale {QUICK_SCALE}")
    parser.add_argument("--only", metavar="CASE[,CASE]",
                        help=f"run only these cases ({', '.join(cases.CASES)}); default all")
    parser.add_argument("--output", type=Path,
                        help="where to write the results (default bench/results.md for a full run at scale 1, "
                             "bench/out/results-*.md otherwise, so a smoke run never overwrites the reference)")
    parser.add_argument("--profile", action="store_true",
                        help="also run each script once under pyinstrument; reports in bench/out/profile-*.txt")
    parser.add_argument("--pure-python-crc", action="store_true",
                        help="hide the `crc32c` package from every command: measure kafka-python's "
                             "pure-Python CRC-32C (what a plain `pip install kafka-python` gives)")
    return parser


@contextlib.contextmanager
def kafka(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, description): $KAFKA_BOOTSTRAP_SERVERS's broker, or one started for the benchmark."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if given:
        yield given, f"{external_version(given)} at {given}, given by KAFKA_BOOTSTRAP_SERVERS"
        return
    from broker import cluster

    running = cluster.start(data_dir, port=cluster.free_port())
    log(f"{PROG}: Apache Kafka {running.kafka_version} at {running.bootstrap} ({os.path.relpath(data_dir)})")
    try:
        yield running.bootstrap, (f"Apache Kafka {running.kafka_version}, one KRaft node started by the "
                                  f"benchmark at {running.bootstrap} (jars: {running.jars_source})")
    finally:
        cluster.stop(data_dir, wipe=True)


def external_version(bootstrap: str) -> str:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**cases.topics.client_kwargs(bootstrap))
    except KafkaError as exc:
        return f"a broker that did not answer ({exc})"
    try:
        return "a Kafka broker speaking the protocol of Kafka " + ".".join(map(str, admin._client.check_version()))
    finally:
        admin.close()


def output_path(options: argparse.Namespace, selected: list[str], scale: float) -> Path:
    if options.output:
        return options.output
    if scale == 1 and selected == list(cases.CASES) and not options.pure_python_crc:
        return RESULTS
    suffix = "-".join(filter(None, [f"scale-{scale:g}" if scale != 1 else "",
                                    "pure-crc" if options.pure_python_crc else "",
                                    "+".join(selected) if selected != list(cases.CASES) else ""]))
    return OUT_DIR / f"results-{suffix}.md"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    selected = options.only.split(",") if options.only else list(cases.CASES)
    unknown = [name for name in selected if name not in cases.CASES]
    if unknown:
        print(f"{PROG}: unknown case {unknown[0]!r} (cases: {', '.join(cases.CASES)})", file=sys.stderr)
        return EXIT_USAGE
    selected = [name for name in cases.CASES if name in selected]  # run in the canonical order
    try:
        scale = QUICK_SCALE if options.quick else options.scale or scale_from_environment()
    except ValueError:
        parser.error("BENCH_SCALE must be a number")
    if scale <= 0 or options.runs < 1:
        parser.error("--scale and --runs must be more than 0")

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    kcat = shutil.which("kcat") or shutil.which("kafkacat")  # older Debian/Ubuntu name it kafkacat
    ctx = cases.Context(bootstrap="", out=OUT_DIR, runs=options.runs, scale=scale, kcat=kcat,
                        env=dict(os.environ), log=log)
    if options.pure_python_crc:
        ctx.env = cases.pure_crc_env(ctx)
    if options.runs < DEFAULT_RUNS:
        ctx.note(f"Only {options.runs} run(s) per figure: fewer than the {DEFAULT_RUNS} of a reference run.")
    started, began = report.now_utc(), time.monotonic()
    rows: dict[str, list[report.Row]] = {}
    loads: list[tuple[str, float]] = []  # the 1-minute load average as each case began
    try:
        if "broker" in selected:
            from broker import jars

            jars.find()  # "jars cached": resolve (and if need be fetch) them before the clock runs
            log("== broker")
            loads.append(("broker", report.load_average()))
            rows["broker"] = cases.broker_start(ctx)
        with kafka(OUT_DIR / "kafka") as (bootstrap, broker_description):
            ctx.bootstrap = bootstrap
            for name in selected:
                if name == "broker":
                    continue
                log(f"== {name}")
                loads.append((name, report.load_average()))
                rows[name] = cases.CASES[name](ctx)
            if options.profile:
                log("== profile")
                cases.profiles(ctx)
            kafka_description = broker_description
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the benchmark's broker is stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:  # BrokerError, JarsError: no broker; or a case that could not start
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    loads.append(("end", report.load_average()))
    if options.pure_python_crc:
        ctx.note("Run with --pure-python-crc: every command used kafka-python's pure-Python CRC-32C.")
    ctx.notes.extend(f"FAILED: {failure}" for failure in ctx.failures)
    table = [row for name in cases.TABLE_ORDER for row in rows.get(name, [])]
    machine = report.describe_machine(kafka_description, kcat, pure_python_crc=options.pure_python_crc)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    text = report.render(table, machine, ctx.notes, command=command, started=started,
                         elapsed_s=time.monotonic() - began, loads=loads, scale=scale, runs=options.runs)
    destination = output_path(options, selected, scale)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(text)
    print(report.markdown_table(table))
    log(f"{PROG}: wrote {os.path.relpath(destination)}"
        + ("" if destination == RESULTS else " (not bench/results.md: a partial or scaled run)"))
    return EXIT_ERROR if ctx.failures else EXIT_OK
