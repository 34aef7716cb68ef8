"""Timing helpers for the benchmark scripts: median/min/max after warm-up, JSON output."""
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def parse_args(argv: list[str], defaults: dict) -> tuple[dict, list[str]]:
    """key=value arguments: the keys of `defaults` (cast to their default's type), and the rest as Hydra overrides."""
    args, overrides = dict(defaults), []
    for arg in argv:
        key, value = arg.split("=", 1)
        if key not in defaults:
            overrides.append(arg)
        elif isinstance(defaults[key], bool):
            args[key] = value.lower() in ("1", "true", "yes")
        else:
            args[key] = type(defaults[key])(value) if defaults[key] is not None else value
    return args, overrides


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}, torch {torch.__version__}"


def seconds(fn: Callable[[], None], cuda: bool = False) -> float:
    """Seconds one call of fn takes: CUDA events around it on a GPU, else the host clock."""
    if not cuda:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000


def summarize(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": len(times)}


def measure(fn: Callable[[], None], *, repeats: int, warmup: int = 1, cuda: bool = False) -> dict:
    """Seconds per call of fn: median, min, max over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    return summarize([seconds(fn, cuda) for _ in range(repeats)])


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def write_result(name: str, result: dict, out_dir: str | None = None) -> None:
    """Print `result` and write it to <out_dir>/<name>.json (default $BENCH_RESULTS_DIR, else benchmarks/results)."""
    out_dir = out_dir or os.environ.get("BENCH_RESULTS_DIR", "benchmarks/results")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine()} | result
    (Path(out_dir) / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
