"""Import of released weights: exact outputs on the tiny released nets, names and shapes of the paper nets."""
import json

import pytest
import torch

from src.ddgan.nets.discriminator import LargeDiscriminator, SmallDiscriminator
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.official import (
    discriminator_kwargs_from_official,
    from_official_state_dict,
    generator_kwargs_from_official,
    load_official_discriminator,
    load_official_generator,
    parse_official_args,
    to_official_state_dict,
)

CASES = ["generator_tiny_positional", "generator_tiny_fourier", "discriminator_small_tiny", "discriminator_large_tiny"]


@pytest.fixture(scope="module")
def tiny(reference_dir):
    return torch.load(reference_dir / "official_nets_tiny.pt", weights_only=True)


def load(case: dict, name: str, state_dict=None) -> torch.nn.Module:
    state_dict = case["state_dict"] if state_dict is None else state_dict
    if name.startswith("generator"):
        return load_official_generator(state_dict, case["config"])
    return load_official_discriminator(state_dict, name.split("_")[1], case["config"])


def run(model: torch.nn.Module, case: dict, name: str) -> torch.Tensor:
    inputs = case["inputs"]
    with torch.no_grad():
        if name.startswith("generator"):
            return model(inputs["x"], inputs["t"], inputs["z"])
        return model(inputs["x_prev"], inputs["t"], inputs["x_t"])    # released (x_prev, t, x_t) = our (x_t, t, x_tp1)


@pytest.mark.parametrize("name", CASES)
def test_reproduces_released_outputs(tiny, name):
    case = tiny[name]
    model = load(case, name)
    assert sum(p.numel() for p in model.parameters()) == case["n_params"]
    assert (run(model, case, name) - case["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", CASES)
def test_round_trip_and_ddp_prefix(tiny, name):
    case = tiny[name]
    model = load(case, name, {f"module.{k}": v for k, v in case["state_dict"].items()})
    exported = to_official_state_dict(model)
    assert exported.keys() == case["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in case["state_dict"].items())


def test_fourier_generator_finite_at_t0(tiny):
    case = tiny["generator_tiny_fourier"]
    inputs = case["inputs"]
    with torch.no_grad():
        out = load(case, "generator_tiny_fourier")(inputs["x"], torch.zeros_like(inputs["t"]), inputs["z"])
    assert torch.isfinite(out).all()


def test_wrong_state_dict_raises_clear_error(tiny):
    case = tiny["discriminator_small_tiny"]
    sd = dict(case["state_dict"])
    missing = {k: v for k, v in sd.items() if k != "conv2.skip.0.weight"}
    with pytest.raises(ValueError, match=r"missing keys: conv2\.skip\.0\.weight"):
        load(case, "discriminator_small_tiny", missing)
    with pytest.raises(ValueError, match=r"unexpected keys: conv5\.dense_t1\.bias"):
        load(case, "discriminator_small_tiny", {**sd, "conv5.dense_t1.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"shape mismatches: end_linear\.weight \(1, 3\) \(expected \(1, 64\)\)"):
        load(case, "discriminator_small_tiny", {**sd, "end_linear.weight": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="kind"):
        load_official_discriminator(sd, "medium", case["config"])
    g = tiny["generator_tiny_positional"]
    with pytest.raises(ValueError, match="missing keys"):               # the fourier net's keys do not fit
        from_official_state_dict(tiny["generator_tiny_fourier"]["state_dict"],
                                 NCSNpp(**generator_kwargs_from_official(g["config"])))


def test_unsupported_released_options_raise(tiny):
    config = tiny["generator_tiny_positional"]["config"]
    for option in ({"progressive": "output_skip"}, {"resblock_type": "ddpm"}, {"fir": False}):
        with pytest.raises(ValueError, match=next(iter(option))):
            generator_kwargs_from_official({**config, **option})


def test_parse_official_args_flags():
    cfg = parse_official_args("--ch_mult 1 2 --not_use_tanh --centered --exp foo --num_channels_dae 32")
    kwargs = generator_kwargs_from_official(cfg)
    assert kwargs["channel_mult"] == [1, 2] and kwargs["base_channels"] == 32
    assert kwargs["final_tanh"] is False and kwargs["centered"] is False
    assert kwargs["n_mlp"] == 3 and kwargs["attn_resolutions"] == [16]                  # released defaults


@pytest.mark.parametrize("dataset, kind", [("cifar10", SmallDiscriminator), ("celebahq256", LargeDiscriminator)])
def test_paper_nets_match_released_manifest(reference_dir, dataset, kind):
    entry = json.loads((reference_dir / "official_state_dict_manifest.json").read_text())[dataset]
    config = parse_official_args(entry["args"])
    with torch.device("meta"):
        g = NCSNpp(**generator_kwargs_from_official(config))
        d = kind(**discriminator_kwargs_from_official(config))
    for model, names, total in ((g, entry["generator"], entry["generator_params"]),
                                (d, entry["discriminator"], entry["discriminator_params"])):
        assert {k: list(v.shape) for k, v in to_official_state_dict(model).items()} == names
        assert sum(p.numel() for p in model.parameters()) == total
