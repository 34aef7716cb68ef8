"""Chaos test of exact resume: SIGKILL a training run at random iterations, resume it from last.ckpt each time, and
compare its final weights with an uninterrupted run of the same config.

    python -m benchmarks.chaos_resume [data=gaussians25|stacked_digits|both] [kills=3] [seed=0] [every=3]
                                      [out=DIR] [json=FILE] [key=value Hydra overrides for both runs ...]

Each kill is one of
- `step`: SIGKILL as soon as the run reports the target iteration (the kill lands wherever the run is then: in
  the next iteration, or inside the last.ckpt write of that iteration);
- `write`: the first checkpoint write at or after the target iteration stops half-way (half of the file's bytes
  are in the temporary file) and is SIGKILLed there.
Every resume is `ckpt_path=last` in the same output directory, as a requeued job would do. Prints the kills,
the iterations, and the largest absolute weight difference (G, D and EMA G) from the uninterrupted run.
"""
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
PROBES = "benchmarks.chaos_resume"  # the callbacks below, as the training process imports them
REPORT = "chaos: iteration"
PAUSED = "chaos: paused in checkpoint write"

GAUSSIANS = [  # 24 iterations (trainer.max_steps: 2 optimizer steps each), epochs of 8, tiny MLPs
    "experiment=gaussians25", "model.generator.hidden_dim=32", "model.discriminator.hidden_dim=32",
    "data.batch_size_per_device=64", "data.iterations_per_epoch=8", "trainer.max_epochs=-1", "trainer.max_steps=48",
    "callbacks.mixture_eval.num_samples=500",
]
STACKED_DIGITS = [  # 3 epochs (trainer.max_epochs) of 5 iterations at 16 px, random flips on (torch's global stream)
    "experiment=stacked_digits", "data.image_size=16", "model.sample_shape=[3,16,16]", "model.generator.base_channels=8",
    "model.generator.channel_mult=[1,2]", "model.generator.z_emb_dim=16", "model.nz=8",
    "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16", "data.num_images=80",
    "data.batch_size_per_device=16", "data.hflip=true", "trainer.max_epochs=3", "callbacks=[checkpoint]", "model.lazy_reg=2",
]
CONFIGS = {"gaussians25": (GAUSSIANS, 24), "stacked_digits": (STACKED_DIGITS, 15)}  # overrides, iterations
COMMON = ["trainer.enable_progress_bar=false", "logger=none"]


@dataclass
class Kill:
    kind: str  # step | write
    target: int  # iteration the kill was aimed at
    resumed_from: int  # iteration of the last.ckpt the killed process started from (0: fresh start)
    killed_at: int = -1  # last iteration the process reported before the kill


@dataclass
class ChaosResult:
    data: str
    iterations: int
    kills: list[Kill] = field(default_factory=list)
    max_abs_weight_diff: float = float("nan")
    seconds: float = 0.0


# ---- inside the training process: callbacks added with Hydra overrides --------------------------------
class ReportIterations(L.Callback):
    """Prints `chaos: iteration N` after every iteration (before that iteration's checkpoint write)."""

    def on_train_batch_end(self, trainer, module, *args):
        print(f"{REPORT} {module.iteration}", flush=True)


class PauseCheckpointWrite(L.Callback):
    """Makes the first checkpoint write at or after iteration `from_iteration` write half its bytes, report, and
    hang (until the chaos driver kills the process)."""

    def __init__(self, from_iteration: int):
        real_save = torch.save

        def half_save_then_hang(obj, f, *args, **kwargs):
            at = obj.get("ddgan", {}).get("iteration", -1) if isinstance(obj, dict) else -1
            if at < from_iteration or isinstance(f, str | os.PathLike):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            print(f"{PAUSED} at iteration {at}", flush=True)
            while True:
                time.sleep(60)

        torch.save = half_save_then_hang


# ---- the chaos driver (parent) ---------------------------------------------------------------------
def launch(overrides: list[str], pause_at: int | None = None) -> subprocess.Popen:
    """`python -m src.train overrides`, reporting its iterations (and pausing in a write at `pause_at`)."""
    probes = [f"+callbacks.chaos_report._target_={PROBES}.ReportIterations"]
    if pause_at is not None:
        probes += [f"+callbacks.chaos_pause._target_={PROBES}.PauseCheckpointWrite",
                   f"+callbacks.chaos_pause.from_iteration={pause_at}"]
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen([sys.executable, "-m", "src.train", *overrides, *probes], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_completion(overrides: list[str]) -> None:
    process = launch(overrides)
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"training failed (exit {process.returncode}):\n{output[-4000:]}")


def kill_when(process: subprocess.Popen, kill: Kill) -> None:
    """SIGKILL `process` once it reports kill.target (step) or hangs inside a checkpoint write (write)."""
    tail = []
    for line in process.stdout:
        tail = [*tail[-40:], line]
        if line.startswith(REPORT):
            kill.killed_at = int(line.split()[-1])
        if (kill.kind == "step" and kill.killed_at >= kill.target) or (kill.kind == "write" and line.startswith(PAUSED)):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
    process.wait()
    raise RuntimeError(f"the run ended (exit {process.returncode}) before the {kill.kind} kill at iteration "
                       f"{kill.target}:\n{''.join(tail)}")


def saved_iteration(last: Path) -> int:
    return torch.load(last, map_location="cpu", weights_only=False)["ddgan"]["iteration"] if last.is_file() else 0


def plan_kills(count: int, iterations: int, rng: random.Random) -> list[Kill]:
    """`count` kills at distinct random iterations in [1, iterations - 1], alternately step and write (sorted)."""
    targets = sorted(rng.sample(range(1, iterations), count))
    kinds = rng.sample(["step", "write"] * count, count)
    if count >= 2 and len(set(kinds)) == 1:
        kinds[0] = "write" if kinds[0] == "step" else "step"
    return [Kill(kind, target, resumed_from=0) for kind, target in zip(kinds, targets, strict=True)]


def kill_repeatedly(overrides: list[str], run_dir: Path, kills: list[Kill]) -> None:
    """Start the run in `run_dir` (resuming from its last.ckpt when there is one) and SIGKILL it, once per kill."""
    for kill in kills:
        kill.resumed_from = saved_iteration(run_dir / "checkpoints" / "last.ckpt")
        kill_when(launch(resume_overrides(overrides, run_dir), pause_at=kill.target if kill.kind == "write" else None), kill)


def resume_overrides(overrides: list[str], run_dir: Path) -> list[str]:
    """The run in `run_dir`: resumed with ckpt_path=last once it has a last.ckpt, else from the start."""
    resume = ["ckpt_path=last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
    return [*overrides, f"hydra.run.dir={run_dir}", *resume]


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest |a - b| over the floating-point tensors of two checkpoints' state dicts (same keys required)."""
    state_a = torch.load(a, map_location="cpu", weights_only=False)["state_dict"]
    state_b = torch.load(b, map_location="cpu", weights_only=False)["state_dict"]
    if state_a.keys() != state_b.keys():
        raise ValueError(f"{a} and {b} hold different networks")
    return max((state_a[k].double() - state_b[k].double()).abs().max().item()
               for k in state_a if state_a[k].is_floating_point())


def chaos(data: str, *, kills: int = 3, seed: int = 0, every: int = 3, out: Path, extra: list[str] = ()) -> ChaosResult:
    """The uninterrupted run and the killed-and-resumed run of `data`, and their weight difference."""
    base, iterations = CONFIGS[data]
    overrides = [*base, *COMMON, f"callbacks.model_checkpoint.every_n_iterations={every}", *extra]
    result, start = ChaosResult(data, iterations, plan_kills(kills, iterations, random.Random(seed))), time.monotonic()
    run_to_completion(resume_overrides(overrides, out / data / "straight"))
    kill_repeatedly(overrides, out / data / "chaos", result.kills)
    run_to_completion(resume_overrides(overrides, out / data / "chaos"))
    straight, chaotic = (out / data / name / "checkpoints" / "last.ckpt" for name in ("straight", "chaos"))
    if saved_iteration(straight) != iterations or saved_iteration(chaotic) != iterations:
        raise RuntimeError(f"{data}: expected {iterations} iterations, got {saved_iteration(straight)} (straight) "
                           f"and {saved_iteration(chaotic)} (killed and resumed)")
    if leftovers := sorted(p.name for p in chaotic.parent.glob(".*.tmp-*")):
        raise RuntimeError(f"{data}: temporary files of killed writes were left behind: {leftovers}")
    result.max_abs_weight_diff = max_weight_difference(straight, chaotic)
    result.seconds = round(time.monotonic() - start, 1)
    return result


def describe(result: ChaosResult) -> str:
    kills = ", ".join(f"{k.kind}@{k.target} (killed after {k.killed_at}, resumed from {k.resumed_from})" for k in result.kills)
    return (f"{result.data}: {len(result.kills)} kills [{kills}]; {result.iterations} iterations; "
            f"max |weight difference| {result.max_abs_weight_diff:.3g} ({result.seconds} s)")


def main(argv: list[str]) -> int:
    from benchmarks.common import parse_args

    args, extra = parse_args(argv, {"data": "both", "kills": 3, "seed": 0, "every": 3, "out": "", "json": ""})
    out = Path(args["out"] or f"/tmp/chaos_resume_{os.getpid()}")
    names = list(CONFIGS) if args["data"] == "both" else [args["data"]]
    results = [chaos(name, kills=args["kills"], seed=args["seed"], every=args["every"], out=out, extra=extra) for name in names]
    for result in results:
        print(describe(result), flush=True)
    if args["json"]:
        Path(args["json"]).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.max_abs_weight_diff <= 1e-6 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
