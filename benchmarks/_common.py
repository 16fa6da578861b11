"""Shared helpers of the benchmarks: machine info, median-of-repeats timing with competitors
alternating within one run, log-log fits, peak memory, RESULTS.md appending and the final
JSON line.

Conventions (every script):

* a timing is the median of at least :data:`MIN_REPEATS` repeats taken after a warm-up call
  (the warm-up, which includes compilation, is reported apart);
* competitors alternate inside one run (:func:`alternate`: round ``r`` calls every competitor
  once, in an order rotated by ``r``), so that load from other processes hits them alike and
  their *ratio* is meaningful even on a busy machine;
* contention is recorded (:func:`machine_info`, :func:`finish_info`, :func:`load_note`): the
  cores other processes kept busy during the run (``/proc/stat`` minus this process's and its
  workers' CPU time) and the hypervisor's steal time; above a quarter of a core the run is
  marked CONTENDED: its absolute numbers are lower bounds, its within-run ratios the result;
* results are appended to ``benchmarks/RESULTS.md`` with the machine info and the command,
  and the script's last stdout line is one JSON object of its headline figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
MIN_REPEATS = 5


# ----------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags)
    except OSError:
        pass
    return ""


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def cores() -> int:
    """CPUs this process may run on (affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _proc_stat() -> tuple[float, float, float] | None:
    """Seconds of (busy, steal, total) CPU time of the whole machine so far, from /proc/stat."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy / hz, steal / hz, (busy + steal + idle + iowait) / hz


def _own_cpu() -> float:
    """CPU seconds of this process and of its finished (waited-for) children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def busy_now(seconds: float = 1.0) -> float | None:
    """Cores kept busy by other processes right now: /proc/stat sampled while this one sleeps."""
    a = _proc_stat()
    time.sleep(seconds)
    b = _proc_stat()
    if not (a and b):
        return None
    return round((b[0] - a[0] + b[1] - a[1]) / seconds, 2)


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def versions(names: Sequence[str] = ("numpy", "scipy", "jax", "jaxlib", "optax", "torch")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def add_cpu_devices_option(ap) -> None:
    """``--cpu-devices N`` (N >= 1) on a script's parser, for :func:`use_cpu_devices`."""
    import argparse

    def count(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
        return n

    ap.add_argument("--cpu-devices", type=count, default=None,
                    help="JAX devices the CPU is split into, as `rbk --cpu-devices` (default: one per core, as the rbk command)")


def use_cpu_devices(n: int | None = None) -> str:
    """Split the CPU into JAX devices as the ``rbk`` command does (before any JAX computation).

    ``n``: devices (default one per core; 1 keeps JAX's single CPU device). Returns a note for
    the results (:func:`machine_info` records it when called after this).
    """
    from rbk import train

    got = train.configure_cpu_devices(n)
    note = f"{got} CPU device(s) (rbk.train.configure_cpu_devices, as the rbk command)"
    os.environ["_RBK_BENCH_DEVICES"] = note
    return note


def machine_info() -> dict:
    """What the numbers were taken on (call at the start of a run; :func:`finish_info` at the end)."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": cores(),
        "mem_gb": _mem_total_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions(),
        "git": git_commit(),
        "env": {k: os.environ[k] for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JAX_PLATFORMS",
                                           "JAX_NUM_CPU_DEVICES") if k in os.environ},
        "jax_devices": os.environ.get("_RBK_BENCH_DEVICES", "JAX's default (one CPU device)"),
        "load_start": load_avg(),
        "others_at_start": busy_now(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "_t0": (time.perf_counter(), _proc_stat(), _own_cpu()),
    }


def finish_info(info: dict) -> dict:
    """Close the run's record: load average, and the cores other processes used meanwhile."""
    info["load_end"] = load_avg()
    t0, st0, own0 = info.get("_t0", (None, None, None))
    st1 = _proc_stat()
    if st0 and st1:
        wall = time.perf_counter() - t0
        busy, steal = st1[0] - st0[0], st1[1] - st0[1]
        if wall > 1.0:
            info["others_cores"] = round(max(busy - (_own_cpu() - own0), 0.0) / wall, 2)
            info["steal_cores"] = round(steal / wall, 2)
    return info


def load_note(info: dict) -> str:
    """One sentence on contention: the cores other processes (and the hypervisor) took during the run.

    Measured from ``/proc/stat`` (all CPU time of the machine) minus this process's and its
    workers' own CPU time, over the run's wall time; the 1-min load averages are given too.
    """
    others, steal = info.get("others_cores"), info.get("steal_cores")
    la = f"1-min load average {info.get('load_start')} at start, {info.get('load_end')} at end"
    if others is None:  # at the start of a run: what a 1 s sample saw
        now = info.get("others_at_start")
        return (f"other processes busy on {now} of {info['cores']} cores at the start; {la}"
                + (" (CONTENDED)" if now is not None and now > 0.25 else ""))
    busy = others + (steal or 0.0) > 0.25
    return (
        f"other processes used {others} of the {info['cores']} cores on average during the run"
        f" (hypervisor steal {steal}); {la}"
        + (": CONTENDED; read absolute numbers as lower bounds and the ratios measured within the run as the result"
           if busy else ": quiet")
    )


# ----------------------------------------------------------------------------- timing


def block(x):
    """Wait for JAX results (no-op for anything else)."""
    try:
        import jax

        return jax.block_until_ready(x)
    except ImportError:  # pragma: no cover
        return x


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def alternate(
    calls: Mapping[str, Callable[[], object]],
    repeats: int = MIN_REPEATS,
    warmup: bool = True,
    measure: Mapping[str, Callable[[Callable[[], object]], float]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Time competitors round-robin: ``repeats`` rounds, each calls every competitor once.

    The order is rotated each round (no competitor always runs first). ``measure[name]``
    may replace the plain wall-clock measurement of one call (it receives the callable and
    returns seconds; e.g. a paired difference). Returns ``(times, warmup_times)``.
    """
    repeats = max(int(repeats), MIN_REPEATS)
    names = list(calls)
    measure = dict(measure or {})
    first = {n: timed(calls[n]) for n in names} if warmup else {}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for i in range(len(names)):
            n = names[(i + r) % len(names)]
            times[n].append(measure[n](calls[n]) if n in measure else timed(calls[n]))
    return times, first


def median(ts: Sequence[float]) -> float:
    return float(statistics.median(ts))


def spread(ts: Sequence[float]) -> str:
    """``median [min-max]`` in seconds, for the tables."""
    return f"{median(ts):.4g} [{min(ts):.3g}-{max(ts):.3g}]"


# ----------------------------------------------------------------------------- fits, memory


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through ``(log x, log y)``: returns ``(exponent, prefactor)``."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    slope, icpt = np.polyfit(lx, ly, 1)
    return float(slope), float(math.exp(icpt))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM, else ru_maxrss), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``/proc/self/clear_refs``, value 5); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- output


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def append_results(title: str, info: dict, body: str, headline: Mapping[str, object]) -> None:
    """Append a section (machine info, command, body, headline JSON) to ``benchmarks/RESULTS.md``."""
    finish_info(info)
    v = info["versions"]
    lines = [
        f"## {title} — {info['date']}",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']} ({info['cpu_flags']}), {info['cores']} cores, {info['mem_gb']} GB, {info['os']}, host {info['host']}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; rbk git {info['git']}",
        f"- env: {info['env'] or '(no XLA_FLAGS / thread variables set)'}; jax: {info.get('jax_devices', '?')}",
        f"- load: {load_note(info)}",
        "",
        body.strip(),
        "",
        "Headline: `" + json.dumps(headline, sort_keys=False) + "`",
        "",
        "",
    ]
    new = not RESULTS.exists()
    with RESULTS.open("a") as f:
        if new:
            f.write("# Benchmark results\n\nAppended by `benchmarks/*.py` (see `docs/benchmarks.md`); newest last.\n\n")
        f.write("\n".join(lines))


def emit(headline: Mapping[str, object]) -> None:
    """The last stdout line: one JSON object."""
    print(json.dumps(dict(headline)), flush=True)


def rounded(x: float, digits: int = 4) -> float:
    if x is None or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def matmul_peak(quick: bool = False, repeats: int = MIN_REPEATS, sizes=None) -> dict:
    """fp32 GFLOP/s of square matmuls: ``{'numpy', 'jax', 'best', 'table': {(lib, n): rate}}``."""
    import jax
    import jax.numpy as jnp

    sizes = sizes or ((1024, 2048) if quick else (1024, 2048, 3072, 4096))
    mm = jax.jit(lambda a, b: a @ b)
    table = {}
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        calls = {"numpy": lambda: a @ b, "jax": lambda: mm(ja, jb)}
        times, _ = alternate(calls, repeats)
        for lib, ts in times.items():
            table[(lib, n)] = 2.0 * n**3 / median(ts) / 1e9
    out = {lib: max(v for (l, _), v in table.items() if l == lib) for lib in ("numpy", "jax")}
    out["best"] = max(out["numpy"], out["jax"])
    out["table"] = table
    return out
