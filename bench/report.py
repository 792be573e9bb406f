"""Figures, their summary (median, min, max of the runs), the machine, and results.md.

A figure is one number per run, e.g. producer.py's events/s in each of three runs; the table
shows the median with the min and max, and the ratio against a reference measured in the same
run. Nothing here asserts a target: a missed target is reported, not raised.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path

# How each unit is printed: throughput without decimals, latencies to 0.1 ms.
UNIT_FORMATS = {
    "events/s": "{:,.0f}",
    "tweets/s": "{:,.0f}",
    "records/s": "{:,.0f}",
    "MB/s": "{:,.2f}",
    "ms": "{:,.1f}",
    "s": "{:,.2f}",
}
MB = 1_000_000  # MB/s in decimal megabytes, as network and disk figures are given
COMMAND_TIMEOUT_S = 10


@dataclasses.dataclass
class Row:
    """One line of the table: what was measured, one value per run (NaN: the run failed)."""

    case: str
    subject: str
    unit: str
    values: list[float]
    ratio: str = ""  # e.g. "0.93× bare" (filled in by the case, which knows its references)
    target: str = ""  # e.g. "≥ 0.9× bare: met"

    @property
    def valid(self) -> list[float]:
        return [value for value in self.values if not math.isnan(value)]

    @property
    def median(self) -> float:
        return statistics.median(self.valid) if self.valid else math.nan

    @property
    def low(self) -> float:
        return min(self.valid, default=math.nan)

    @property
    def high(self) -> float:
        return max(self.valid, default=math.nan)


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "failed"
    return UNIT_FORMATS.get(unit, "{:,.3g}").format(value)


def ratio(row: Row, reference: Row) -> float:
    """row's median over reference's median (NaN if either has no valid run)."""
    if not row.valid or not reference.valid or reference.median == 0:
        return math.nan
    return row.median / reference.median


def ratio_text(row: Row, reference: Row, name: str) -> str:
    value = ratio(row, reference)
    return "" if math.isnan(value) else f"{value:.2f}× {name}"


def target_text(goal: str, met: bool | None) -> str:
    if met is None:
        return f"{goal}: not measured"
    return f"{goal}: **met**" if met else f"{goal}: **missed**"


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (fraction 0.99 for p99)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| case | what | median | min | max | unit | ratio (same run) | target |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    previous_case = None
    for row in rows:
        case = row.case if row.case != previous_case else ""
        previous_case = row.case
        runs = f" ({len(row.valid)}/{len(row.values)} runs)" if len(row.valid) != len(row.values) else ""
        lines.append(f"| {case} | {row.subject}{runs} | {fmt(row.median, row.unit)} | {fmt(row.low, row.unit)} | "
                     f"{fmt(row.high, row.unit)} | {row.unit} | {row.ratio} | {row.target} |")
    return "\n".join(lines)


def raw_table(rows: list[Row]) -> str:
    lines = ["| case | what | unit | runs |", "|---|---|---|---|"]
    for row in rows:
        values = ", ".join(fmt(value, row.unit) for value in row.values)
        lines.append(f"| {row.case} | {row.subject} | {row.unit} | {values} |")
    return "\n".join(lines)


# ---- the machine ---------------------------------------------------------------------------

def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc.__class__.__name__})"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.MULTILINE)
    return match[1].strip() if match else (platform.processor() or platform.machine())


def memory() -> str:
    match = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    return f"{int(match[1]) / 1024 ** 2:.1f} GiB" if match else "unknown"


def os_name() -> str:
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.MULTILINE)
    name = match[1] if match else platform.system()
    return f"{name}, kernel {platform.release()}"


def crc32c_implementation() -> str:
    """Which CRC-32C kafka-python computes record batch checksums with: it matters ~3x."""
    from kafka.record import util

    if util.crc32c_c is None:
        return "pure Python (the `crc32c` package is not installed)"
    import importlib.metadata

    return f"C, from the `crc32c` package {importlib.metadata.version('crc32c')}"


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def describe_machine(kafka_description: str, kcat: str | None,
                     pure_python_crc: bool = False) -> list[tuple[str, str]]:
    import kafka

    crc = "pure Python (hidden by --pure-python-crc)" if pure_python_crc else crc32c_implementation()
    java = shutil.which("java")
    return [
        ("CPU", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("RAM", memory()),
        ("OS", os_name()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Java", _first_line([java, "-version"]) if java else "not found"),
        ("kafka-python", f"{kafka.__version__} (CRC-32C: {crc})"),
        ("Kafka", kafka_description),
        ("kcat", f"{kcat} {_kcat_version(kcat)}" if kcat else "not installed"),
    ]


def _kcat_version(kcat: str) -> str:
    try:
        text = subprocess.run([kcat, "-V"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"Version (\S+) .*?librdkafka (\S+)", text)
    return f"{match[1]} (librdkafka {match[2]})" if match else ""


def render(rows: list[Row], machine: list[tuple[str, str]], notes: list[str], *, command: str,
           started: datetime, elapsed_s: float, loads: list[tuple[str, float]], scale: float, runs: int) -> str:
    """The whole results.md."""
    machine_lines = "\n".join(f"| {name} | {value} |" for name, value in machine)
    load_text = ", ".join(f"{name} {load:.2f}" for name, load in loads)
    scale_text = "" if scale == 1 else (f"\n**Scaled run (BENCH_SCALE={scale:g})**: counts and durations are "
                                        f"{scale:g}× the reference sizes; not the reference figures.\n")
    note_lines = "\n".join(f"- {note}" for note in notes)
    return f"""# Benchmark results

Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed_s / 60:.1f} min. Each figure is the
median of {runs} runs, with the min and max; ratios compare medians measured in this same run. Targets
are reported, not asserted. How each figure is measured: `bench/README.md`.
{scale_text}
## Machine

| | |
|---|---|
{machine_lines}

Noise: a 2-core machine shared with other work (other sessions run test suites at times). The 1-minute
load average as each case began: {load_text}. Well above the benchmark's own load (~1-2), the figures
of that case are pessimistic and noisier, its tail latencies most of all. Rerun with `make bench`
(or `python -m bench --only CASE`).

## Results

{markdown_table(rows)}

## Notes

{note_lines}

## Every run

{raw_table(rows)}
"""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)

