"""Timing helpers for the benchmark scripts: median/min/max after warm-up, JSON output."""
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{device}, torch {torch.__version__}"


def measure(fn: Callable[[], None], *, repeats: int, warmup: int = 1, sync: bool = False) -> dict:
    """Seconds per call of fn: median, min, max over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def write_result(name: str, result: dict, out_dir: str = "benchmarks/results") -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine()} | result
    (Path(out_dir) / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
