"""What the commands (src/*.py) share: the config directory, the exit codes, the one-line failure, the device."""
import sys
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"  # absolute: works under -m and when imported

EXIT_BAD_INPUT = 2  # a setting or file the user can fix; one line says which and how
EXIT_DIVERGED = 3   # training stopped after too many non-finite updates (last.ckpt holds the last good state)


def fail(message: str) -> None:
    """One line on stderr, then exit with EXIT_BAD_INPUT."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA when available, else the CPU; any other name as torch spells it (cpu, cuda, cuda:1)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
