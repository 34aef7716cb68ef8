"""Inference precision of sampling and evaluation: fp32, or bf16 autocast around the networks."""
import torch

PRECISIONS = ("32", "bf16")  # fp32 | bf16 autocast (posterior, losses and metric statistics stay fp32)


def validate_precision(precision, key: str = "precision") -> str:
    """`precision` as one of PRECISIONS; ValueError naming `key` otherwise."""
    if str(precision) not in PRECISIONS:
        raise ValueError(f"{key}={precision} is not supported: use 32 (fp32, the default) or bf16 "
                         "(bf16 autocast around the networks; the posterior step and the statistics stay fp32)")
    return str(precision)


def autocast(device: torch.device | str, precision: str, cache: bool = True):
    """bf16 autocast for precision=bf16, else a no-op. cache=False for work captured in a CUDA graph: cast weights
    must not be freed between replays."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=validate_precision(precision) == "bf16",
                          cache_enabled=cache)
