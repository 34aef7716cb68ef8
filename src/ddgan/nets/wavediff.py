"""Import (and export) of released WaveDiff networks (VinAIResearch/WaveDiff, train_wddgan.py).

WaveDiff keeps DDGAN's released layouts (official.py maps them, both ways): the same `all_modules.<i>` list for
its two generators (`--net_type normal`: NCSN++; `--net_type wavelet`: WaveletNCSNpp, whose Haar blocks add
`convH_0`) and the same discriminators, with a depth `--num_disc_layers`. The released script builds the
networks at `--current_resolution` (half the image size per Haar level), on `--num_channels 12` subbands.

    args = parse_wavediff_args(run_sh_command)
    G = load_wavediff_generator(torch.load("netG_500.pth"), args, subband_order="dwt_idwt")
    D = load_wavediff_discriminator(state_dict, wavediff_discriminator_kind(args["dataset"]), args)
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from src.ddgan.nets.discriminator import Discriminator, LargeDiscriminator, SmallDiscriminator
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.official import (
    RELEASED_DEFAULTS,
    discriminator_kwargs_from_official,
    from_official_state_dict,
    generator_kwargs_from_official,
    parse_released_args,
)
from src.ddgan.nets.wavelet_ncsnpp import WaveletNCSNpp

# argparse defaults of the released train_wddgan.py for the flags that shape the networks (and the data space).
WAVEDIFF_DEFAULTS: dict[str, Any] = {
    **RELEASED_DEFAULTS, "num_channels": 12, "patch_size": 1, "current_resolution": 256, "net_type": "normal",
    "num_disc_layers": 6, "use_pytorch_wavelet": False, "no_use_fbn": False, "no_use_freq": False,
    "no_use_residual": False,
}
_STORE_TRUE = ("not_use_tanh", "use_pytorch_wavelet", "no_use_fbn", "no_use_freq", "no_use_residual")
_DISCRIMINATOR_LAYERS = {"small": (3, 4), "large": (3, 6)}    # the released constructors clamp to these


def parse_wavediff_args(args: str | Sequence[str]) -> dict[str, Any]:
    """A released WaveDiff training command (run.sh) -> released config dict, defaults filled in.

    Abbreviated flags resolve as in the released argparse parser (run.sh writes `--attn_resolution 16`).
    """
    return parse_released_args(args, WAVEDIFF_DEFAULTS, store_true=_STORE_TRUE, allow_abbrev=True)


def _config(config: Mapping[str, Any] | argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Released config with defaults, and the networks' resolution: `current_resolution` (else `image_size`)."""
    given = dict(config) if isinstance(config, Mapping) else vars(config)
    cfg = {**WAVEDIFF_DEFAULTS, **given}
    return cfg, int(given.get("current_resolution", given.get("image_size", cfg["current_resolution"])))


def wavediff_subband_order(config: Mapping[str, Any] | argparse.Namespace) -> str:
    """The Haar subband order the released run trains on (wavelets.py): --use_pytorch_wavelet or DWT_IDWT."""
    return "pytorch_wavelets" if _config(config)[0]["use_pytorch_wavelet"] else "dwt_idwt"


def check_wavediff_subband_order(config: Mapping[str, Any] | argparse.Namespace, subband_order: str) -> None:
    """ValueError (naming the setting and the fix) unless `subband_order` is the released run's."""
    released = wavediff_subband_order(config)
    if subband_order != released:
        flag = "with --use_pytorch_wavelet" if released == "pytorch_wavelets" else "without --use_pytorch_wavelet"
        raise ValueError(f"subband_order={subband_order!r} does not match the released run, which was trained "
                         f"{flag} on {released!r} subbands (LH and HL swapped): set subband_order={released!r}")


def wavediff_generator_kwargs(config: Mapping[str, Any] | argparse.Namespace) -> tuple[type[NCSNpp], dict[str, Any]]:
    """Released WaveDiff generator config -> (NCSNpp or WaveletNCSNpp, its keyword arguments)."""
    cfg, resolution = _config(config)
    kwargs = generator_kwargs_from_official({**cfg, "image_size": resolution})
    kwargs["patch_size"] = int(cfg["patch_size"])
    net_type = str(cfg["net_type"])
    if net_type == "normal":
        return NCSNpp, kwargs
    if net_type == "wavelet":
        return WaveletNCSNpp, {**kwargs, "wavelet_pyramid": not cfg["no_use_residual"],
                               "wavelet_resblocks": not cfg["no_use_freq"],
                               "frequency_bottleneck": not cfg["no_use_fbn"]}
    raise ValueError(f"released net_type={net_type!r} is not a WaveDiff generator (use 'normal' or 'wavelet')")


def wavediff_discriminator_kind(dataset: str) -> str:
    """The released training script's choice: "small" for cifar10 and stl10, "large" otherwise."""
    return "small" if dataset in ("cifar10", "stl10") else "large"


def wavediff_discriminator_kwargs(kind: str, config: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Released WaveDiff discriminator config (`nc` or 2 x `num_channels`, `ngf`, `t_emb_dim`, `num_layers` or
    `num_disc_layers`) -> Small/LargeDiscriminator kwargs. The depth is clamped as the released constructors do."""
    if kind not in _DISCRIMINATOR_LAYERS:
        raise ValueError(f"discriminator kind must be 'small' or 'large', got {kind!r}")
    cfg, resolution = _config(config)
    kwargs = discriminator_kwargs_from_official(
        {**cfg, "nc": cfg.get("nc", 2 * int(cfg["num_channels"])), "image_size": resolution})
    low, high = _DISCRIMINATOR_LAYERS[kind]
    return {**kwargs, "num_layers": min(max(int(cfg.get("num_layers", cfg["num_disc_layers"])), low), high)}


def load_wavediff_generator(state_dict: Mapping[str, torch.Tensor], released_config: Mapping[str, Any] | argparse.Namespace,
                            *, subband_order: str | None = None) -> NCSNpp:
    """Build our NCSNpp / WaveletNCSNpp from a released WaveDiff config and load a released generator state dict.

    `subband_order`, when given, is the order of the data the network will see; it must be the released run's.
    """
    if subband_order is not None:
        check_wavediff_subband_order(released_config, subband_order)
    cls, kwargs = wavediff_generator_kwargs(released_config)
    model = cls(**kwargs)
    model.load_state_dict(from_official_state_dict(state_dict, model))
    return model


def load_wavediff_discriminator(state_dict: Mapping[str, torch.Tensor], kind: str,
                                released_config: Mapping[str, Any] | argparse.Namespace) -> Discriminator:
    """Build our Small- ("small") or LargeDiscriminator ("large") from a released WaveDiff config and load it."""
    kwargs = wavediff_discriminator_kwargs(kind, released_config)
    model = (SmallDiscriminator if kind == "small" else LargeDiscriminator)(**kwargs)
    model.load_state_dict(from_official_state_dict(state_dict, model))
    return model
