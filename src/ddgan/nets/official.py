"""Import (and export) of released DDGAN weights (NVlabs/denoising-diffusion-gan).

The released networks keep the generator's layers in one flat list (`all_modules.<i>`) and name the
discriminator's blocks `conv1..conv6`. Our modules are named by role and resolution, so importing is a
key mapping plus three small tensor transforms in attention blocks (the released 1x1 "NIN" weights are
stored (in, out), and our q, k, v projections are one stacked Linear). Every mapping is a `_Link`
between one of our parameters and one or more released ones; the same links run both ways.

    model = load_official_generator(torch.load("netG_1200.pth"), parse_official_args(train_command))
    model = load_official_discriminator(state_dict, "small", {"nc": 6, "ngf": 64, "t_emb_dim": 256})
"""
from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from src.ddgan.nets.discriminator import Discriminator, DownBlock, LargeDiscriminator, SmallDiscriminator
from src.ddgan.nets.layers import AttentionBlock, FourierEmbedding, ResBlock
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.resample import FIRDownsampleConv2d
from src.ddgan.nets.wavelet_ncsnpp import WaveletResBlock

# argparse defaults of the released train_ddgan.py for the flags that shape the networks.
RELEASED_DEFAULTS: dict[str, Any] = {
    "image_size": 32, "num_channels": 3, "centered": True, "num_channels_dae": 128, "n_mlp": 3,
    "ch_mult": None, "num_res_blocks": 2, "attn_resolutions": (16,), "dropout": 0.0, "resamp_with_conv": True,
    "conditional": True, "fir": True, "fir_kernel": [1, 3, 3, 1], "skip_rescale": True,
    "resblock_type": "biggan", "progressive": "none", "progressive_input": "residual",
    "progressive_combine": "sum", "embedding_type": "positional", "fourier_scale": 16.0, "not_use_tanh": False,
    "nz": 100, "num_timesteps": 4, "z_emb_dim": 256, "t_emb_dim": 256, "ngf": 64, "dataset": "cifar10",
}
_STORE_FALSE = ("centered", "resamp_with_conv", "conditional", "fir", "skip_rescale")  # flags that turn a default off
_STORE_TRUE = ("not_use_tanh",)
_LIST_FLAGS = ("ch_mult", "fir_kernel", "attn_resolutions")


# ----------------------------------------------------------------------------- released configuration

def parse_official_args(args: str | Sequence[str]) -> dict[str, Any]:
    """A released training command line (string or argv list) -> released config dict, defaults filled in.

    Only the flags that shape the networks are read; the others are ignored.
    """
    return parse_released_args(args, RELEASED_DEFAULTS, store_true=_STORE_TRUE)


def parse_released_args(args: str | Sequence[str], defaults: Mapping[str, Any], *, store_true: Sequence[str],
                        allow_abbrev: bool = False) -> dict[str, Any]:
    """`args` parsed for the flags in `defaults` (store_false flags, `store_true` flags, int lists as released)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=allow_abbrev)
    for name, default in defaults.items():
        if name in _STORE_FALSE:
            parser.add_argument(f"--{name}", action="store_false", default=default)
        elif name in store_true:
            parser.add_argument(f"--{name}", action="store_true", default=default)
        elif name in _LIST_FLAGS:
            parser.add_argument(f"--{name}", nargs="+", type=int, default=default)
        else:
            parser.add_argument(f"--{name}", type=type(default) if default is not None else str, default=default)
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    return vars(parser.parse_known_args(argv)[0])


def _as_dict(config: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    return {**RELEASED_DEFAULTS, **(dict(config) if isinstance(config, Mapping) else vars(config))}


def _int_list(value: Any) -> list[int]:
    """[16], (16,), "16" or "(16, 8)" -> list of ints (the released --attn_resolutions has no type)."""
    if isinstance(value, str):
        return [int(v) for v in re.findall(r"\d+", value)]
    return [int(v) for v in value]


def generator_kwargs_from_official(config: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Released generator config (argparse names) -> `NCSNpp` keyword arguments.

    Supports what the released training commands use: BigGAN blocks with FIR resampling, a time-conditioned
    net, no output pyramid, an input pyramid ("residual") or none. Raises ValueError for anything else.
    """
    cfg = _as_dict(config)
    supported = {
        "resblock_type": ("biggan",), "progressive": ("none",), "progressive_input": ("residual", "none"),
        "conditional": (True,), "fir": (True,), "embedding_type": ("positional", "fourier"),
    }
    for name, allowed in supported.items():
        value = cfg[name].lower() if isinstance(cfg[name], str) else cfg[name]
        if value not in allowed:
            raise ValueError(f"released generator option {name}={cfg[name]!r} is not supported (supported: {allowed})")
    if cfg["ch_mult"] is None:
        raise ValueError("released generator config has no ch_mult (the released CLI requires --ch_mult)")
    return {
        "image_size": int(cfg["image_size"]),
        "image_channels": int(cfg["num_channels"]),
        "base_channels": int(cfg["num_channels_dae"]),
        "channel_mult": _int_list(cfg["ch_mult"]),
        "num_res_blocks": int(cfg["num_res_blocks"]),
        "attn_resolutions": _int_list(cfg["attn_resolutions"]),
        "dropout": float(cfg["dropout"]),
        "time_embedding": cfg["embedding_type"].lower(),
        "fourier_scale": float(cfg["fourier_scale"]),
        "nz": int(cfg["nz"]),
        "z_emb_dim": int(cfg["z_emb_dim"]),
        "n_mlp": int(cfg["n_mlp"]),
        "input_pyramid": cfg["progressive_input"].lower() == "residual",
        "skip_rescale": bool(cfg["skip_rescale"]),
        "fir_taps": _int_list(cfg["fir_kernel"]),
        "final_tanh": not cfg["not_use_tanh"],
        "centered": bool(cfg["centered"]),
    }


def official_discriminator_kind(dataset: str) -> str:
    """The released training script's choice: "small" for cifar10 and stackmnist, "large" otherwise."""
    return "small" if dataset in ("cifar10", "stackmnist") else "large"


def discriminator_kwargs_from_official(config: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
    """Released discriminator config -> Small/LargeDiscriminator kwargs.

    Reads `nc` (= 2 x image channels) or else the CLI's `num_channels`, `ngf`, `t_emb_dim`, `image_size` and
    `act` ("leaky_relu_<slope>", the released training uses 0.2).
    """
    cfg = _as_dict(config)
    if "nc" in cfg and int(cfg["nc"]) % 2:
        raise ValueError(f"released discriminator nc={cfg['nc']} should be 2 x image channels (an even number)")
    act = str(cfg.get("act", "leaky_relu_0.2"))
    match = re.fullmatch(r"leaky_relu_([0-9.]+)", act)
    if match is None:
        raise ValueError(f"released discriminator act={act!r} is not supported (expected 'leaky_relu_<slope>')")
    return {
        "image_size": int(cfg["image_size"]),
        "image_channels": int(cfg["nc"]) // 2 if "nc" in cfg else int(cfg["num_channels"]),
        "base_channels": int(cfg["ngf"]),
        "t_emb_dim": int(cfg["t_emb_dim"]),
        "negative_slope": float(match.group(1)),
    }


# ----------------------------------------------------------------------------- key mapping

@dataclass(frozen=True)
class _Link:
    """Our parameter `ours` <-> released parameter(s) `official`, related by `kind`:
    "copy", "transpose" (NIN (in, out) vs Linear (out, in)), "stack" (q, k, v biases concatenated),
    "stack_transposed" (q, k, v NIN weights, transposed and concatenated), "permute_in" (input channels reordered)."""
    ours: str
    official: tuple[str, ...]
    kind: str = "copy"
    in_channels: tuple[int, ...] = ()     # "permute_in": our input channel i is released input channel in_channels[i]


_BLOCK_NAMES: dict[type, dict[str, str]] = {
    ResBlock: {"norm0.scale_shift": "GroupNorm_0.style", "conv0": "Conv_0", "time_proj": "Dense_0",
               "norm1.scale_shift": "GroupNorm_1.style", "conv1": "Conv_1", "skip": "Conv_2"},
    WaveletResBlock: {"norm0.scale_shift": "GroupNorm_0.style", "conv0": "Conv_0", "time_proj": "Dense_0",
                      "norm1.scale_shift": "GroupNorm_1.style", "conv1": "Conv_1", "skip": "Conv_2",
                      "high_conv": "convH_0"},                  # WaveDiff's WaveletResnetBlockBigGANpp_Adagn
    DownBlock: {"conv0": "conv1.0", "conv1": "conv2.0", "time_proj": "dense_t1", "skip": "skip.0"},
}
_LEAF_NAMES: dict[type, dict[str, str]] = {
    FourierEmbedding: {"frequencies": "W"},
    FIRDownsampleConv2d: {"weight": "Conv2d_0.weight", "bias": "Conv2d_0.bias"},   # released Downsample(with_conv)
}


def _module_links(module: nn.Module, ours: str, official: str) -> list[_Link]:
    """Links of every parameter of `module` (ours at path `ours`, released at prefix `official`)."""
    if isinstance(module, AttentionBlock):
        nin = [f"{official}.NIN_{i}" for i in range(4)]
        return [_Link(f"{ours}.norm.weight", (f"{official}.GroupNorm_0.weight",)),
                _Link(f"{ours}.norm.bias", (f"{official}.GroupNorm_0.bias",)),
                _Link(f"{ours}.qkv.weight", tuple(f"{p}.W" for p in nin[:3]), "stack_transposed"),
                _Link(f"{ours}.qkv.bias", tuple(f"{p}.b" for p in nin[:3]), "stack"),
                _Link(f"{ours}.proj.weight", (f"{nin[3]}.W",), "transpose"),
                _Link(f"{ours}.proj.bias", (f"{nin[3]}.b",))]
    names = _BLOCK_NAMES.get(type(module), {})
    leaves = _LEAF_NAMES.get(type(module), {})
    links = []
    for local, _ in module.named_parameters():
        head, _, leaf = local.rpartition(".")
        released = f"{names[head]}.{leaf}" if head else leaves.get(leaf, leaf)
        links.append(_Link(f"{ours}.{local}", (f"{official}.{released}",)))
    return links


def _generator_links(model: NCSNpp) -> list[_Link]:
    # all_modules follows the released construction order, which NCSNpp registers enc/dec entries in.
    paths = ["time_embed.features"] if isinstance(model.time_embed.features, FourierEmbedding) else []
    paths += ["time_embed.fc0", "time_embed.fc1", "conv_in", *(f"enc.{k}" for k in model.enc),
              "mid_block0", "mid_attn", "mid_block1", *(f"dec.{k}" for k in model.dec), "norm_out", "conv_out"]
    links = [link for i, path in enumerate(paths)
             for link in _module_links(model.get_submodule(path), path, f"all_modules.{i}")]
    for j, layer in enumerate(model.mapping.layers):                 # z_transform = [PixelNorm, Linear, SiLU, ...]
        links += _module_links(layer, f"mapping.layers.{j}", f"z_transform.{2 * j + 1}")
    if model.patch_size > 1:
        links = _released_patch_order(model, links)
    return links


def _released_patch_order(model: NCSNpp, links: list[_Link]) -> list[_Link]:
    """WaveDiff patchifies the input as (p1 p2 c) channels where we have pixel_unshuffle's (c p1 p2) (its output
    uses (c p1 p2), as we do): the convolutions that see the patched image, conv_in and the first input-pyramid
    step (per subband for the Haar pyramid), take their input channels in the released order."""
    p2 = model.patch_size ** 2
    channels = model.conv_in.in_channels // p2
    order = [(o % p2) * channels + o // p2 for o in range(channels * p2)]     # ours (c, q) <- released (q, c)
    first_pyramid = next((f"enc.{k}.weight" for k in model.enc if k.endswith("_pyramid")), None)
    permuted = {"conv_in.weight": order}
    if first_pyramid is not None:
        blocks = model.get_parameter(first_pyramid).shape[1] // len(order)   # 4 subbands for WaveletDownsample
        permuted[first_pyramid] = [b * len(order) + i for b in range(blocks) for i in order]
    return [_Link(link.ours, link.official, "permute_in", tuple(permuted[link.ours])) if link.ours in permuted
            else link for link in links]


def _discriminator_links(model: Discriminator) -> list[_Link]:
    pairs = [("time_embed.fc0", "t_embed.main.0"), ("time_embed.fc1", "t_embed.main.2"), ("stem", "start_conv")]
    pairs += [(f"blocks.{name}", f"conv{i + 1}") for i, name in enumerate(model.blocks)]
    pairs += [("final_conv", "final_conv"), ("head", "end_linear")]
    return [link for ours, official in pairs for link in _module_links(model.get_submodule(ours), ours, official)]


def _links(model: nn.Module) -> list[_Link]:
    if isinstance(model, NCSNpp):
        return _generator_links(model)
    if isinstance(model, Discriminator):
        return _discriminator_links(model)
    raise TypeError(f"no released counterpart for {type(model).__name__}")


def _to_ours(link: _Link, tensors: list[torch.Tensor]) -> torch.Tensor:
    if link.kind == "permute_in":
        return tensors[0][:, list(link.in_channels)]
    if link.kind == "transpose":
        return tensors[0].t()
    if link.kind == "stack":
        return torch.cat(tensors)
    if link.kind == "stack_transposed":
        return torch.cat([w.t() for w in tensors])
    return tensors[0]


def _to_official(link: _Link, tensor: torch.Tensor) -> list[torch.Tensor]:
    if link.kind == "permute_in":
        return [tensor[:, torch.argsort(torch.tensor(link.in_channels))]]
    if link.kind == "transpose":
        return [tensor.t().contiguous()]
    if link.kind == "stack":
        return list(tensor.chunk(len(link.official)))
    if link.kind == "stack_transposed":
        return [w.t().contiguous() for w in tensor.chunk(len(link.official))]
    return [tensor]


def to_official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Our NCSNpp / Small- / LargeDiscriminator -> state dict with released names and layouts."""
    ours = model.state_dict()
    return {name: t for link in _links(model) for name, t in zip(link.official, _to_official(link, ours[link.ours]))}


# The released network types, how to tell them from their keys, and the choice that builds each of them here.
_NETWORK_KINDS = {
    "plain": ("a plain NCSN++ generator", "use model/generator=ncsnpp (WaveDiff: --net_type normal)"),
    "wavelet": ("a WaveDiff wavelet generator", "use model/generator=wavelet_ncsnpp (WaveDiff: --net_type wavelet)"),
    "small": ("a small discriminator", "use model/discriminator=small (loader kind 'small')"),
    "large": ("a large discriminator", "use model/discriminator=large (loader kind 'large')"),
}


def released_network_kind(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """"plain", "wavelet", "small" or "large": the released network type a state dict's keys show (None: unknown)."""
    if any(k.startswith("all_modules.") for k in state_dict):
        return "wavelet" if any(".convH_0." in k for k in state_dict) else "plain"
    first = state_dict.get("conv1.conv1.0.weight")
    if "start_conv.weight" in state_dict and first is not None:
        return "small" if first.shape[0] == first.shape[1] else "large"   # small: 2 ngf -> 2 ngf; large: -> 4 ngf
    return None


def _network_kind(model: nn.Module) -> str:
    if isinstance(model, Discriminator):
        return "small" if isinstance(model, SmallDiscriminator) else "large"
    return "wavelet" if getattr(model, "wavelet_resblocks", False) else "plain"


def _check_official_keys(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    """Raise ValueError naming the first missing, unexpected or wrongly shaped released keys
    (and, for a file of another network type, the choice that builds that type)."""
    expected = {k: v.shape for k, v in to_official_state_dict(model).items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(shape)})"
                  for k, shape in expected.items() if k in state_dict and state_dict[k].shape != shape]
    problems = [f"{what}: {', '.join(keys[:5])}{f' (+{len(keys) - 5} more)' if len(keys) > 5 else ''}"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("shape mismatches", mismatched)) if keys]
    if problems:
        found, built = released_network_kind(state_dict), _network_kind(model)
        hint = ""
        if found is not None and found != built:
            fix = _NETWORK_KINDS[found][1]
            if (found in ("small", "large")) != (built in ("small", "large")):
                fix = "import the discriminator file (netD_*.pth)" if built in ("small", "large") else \
                    "import the generator file (netG_*.pth)"
            hint = f"it holds {_NETWORK_KINDS[found][0]}, not {_NETWORK_KINDS[built][0]}: {fix}; "
        raise ValueError(f"released state dict does not fit {type(model).__name__} built from this config; {hint}"
                         + "; ".join(problems))


def from_official_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Released state dict (keys may carry DDP's `module.` prefix) -> our state dict for `model`.

    Raises ValueError naming the first offending keys if the released dict does not fit `model`.
    """
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    _check_official_keys(state_dict, model)
    return {link.ours: _to_ours(link, [state_dict[k] for k in link.official]) for link in _links(model)}


def load_official_generator(state_dict: Mapping[str, torch.Tensor],
                            config: Mapping[str, Any] | argparse.Namespace) -> NCSNpp:
    """Build our NCSNpp from a released config (argparse names) and load released generator weights."""
    model = NCSNpp(**generator_kwargs_from_official(config))
    model.load_state_dict(from_official_state_dict(state_dict, model))
    return model


def load_official_discriminator(state_dict: Mapping[str, torch.Tensor], kind: str,
                                config: Mapping[str, Any] | argparse.Namespace) -> Discriminator:
    """Build our Small- ("small") or LargeDiscriminator ("large") from a released config and load its weights."""
    classes = {"small": SmallDiscriminator, "large": LargeDiscriminator}
    if kind not in classes:
        raise ValueError(f"discriminator kind must be 'small' or 'large', got {kind!r}")
    model = classes[kind](**discriminator_kwargs_from_official(config))
    model.load_state_dict(from_official_state_dict(state_dict, model))
    return model
