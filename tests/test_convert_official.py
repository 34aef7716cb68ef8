"""Released generator files convert into checkpoints that our loader and sampler use."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from src.ddgan.checkpoint import load_ddgan

ROOT = Path(__file__).resolve().parents[1]
TINY_CIFAR_LIKE = [  # experiment=cifar10 with the fixture's small generator (released argument values)
    "model.generator.base_channels=16",
    "model.generator.channel_mult=[1,2,2]",
    "model.generator.num_res_blocks=1",
    "model.nz=8",
    "model.generator.z_emb_dim=32",
    "model.generator.n_mlp=2",
]


def convert_cli(*args) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "src.convert_official", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_released_generator_file_converts_and_reproduces_the_released_output(reference_dir, tmp_path):
    case = torch.load(reference_dir / "official_nets_tiny.pt", weights_only=True)["generator_tiny_positional"]
    released = tmp_path / "netG_1200.pth"
    torch.save({f"module.{k}": v for k, v in case["state_dict"].items()}, released)  # as saved by DDP
    output = tmp_path / "converted.ckpt"
    result = convert_cli("experiment=cifar10", f"official_ckpt={released}", f"output={output}", *TINY_CIFAR_LIKE)
    assert result.returncode == 0, result.stderr[-2000:]

    model = load_ddgan(output)
    with torch.no_grad():
        out = model.generator_ema(case["inputs"]["x"], case["inputs"]["t"], case["inputs"]["z"])
    assert (out - case["output"]).abs().max() <= 1e-5
    samples = model.sample(2, rng=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 3, 32, 32) and torch.isfinite(samples).all()


def test_a_file_of_another_architecture_names_the_offending_keys(reference_dir, tmp_path):
    case = torch.load(reference_dir / "official_nets_tiny.pt", weights_only=True)["generator_tiny_positional"]
    released = tmp_path / "netG.pth"
    torch.save(case["state_dict"], released)
    result = convert_cli("experiment=cifar10", f"official_ckpt={released}", f"output={tmp_path / 'x.ckpt'}")
    assert result.returncode != 0
    assert "does not fit experiment=cifar10" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.ckpt").exists()
