"""Class-conditional DDGAN: num_classes = 0 is today's model, labels reach G and D, the projection term, labelled
data, sampling / editing / pictures by class, conditional metrics, and one-line errors for bad labels."""
import json
import pickle
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.ddgan.checkpoint import load_ddgan, save_ddgan
from src.ddgan.data.errors import DataError
from src.ddgan.data.image_folder import ImageFolderDataModule
from src.ddgan.evaluation import SampleQuality, generated_batches
from src.ddgan.metrics.conditional import ConditionalScores
from src.ddgan.nets.discriminator import LargeDiscriminator, SmallDiscriminator
from src.ddgan.nets.ncsnpp import NCSNpp
from src.ddgan.nets.toy import ToyDiscriminator, ToyGenerator
from src.ddgan.nets.wavelet_ncsnpp import WaveletNCSNpp
from src.train import train
from tests.conftest import TINY_TOY, compose_config, single_thread
from tests.test_train import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CONDITIONAL = [
    "experiment=digits_conditional",
    "model.generator.base_channels=8",
    "model.generator.z_emb_dim=16",
    "model.discriminator.base_channels=8",
    "model.discriminator.t_emb_dim=16",
    "data.batch_size_per_device=16",
    "callbacks.iteration_budget.max_iterations=2",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "callbacks.sample_grid.num_samples=20",
    "metrics.num_samples=40",
    "metrics.batch_size_per_device=20",
    "metrics.classifier_epochs=2",
    "callbacks.generative_metrics.final_num_samples=null",
]
SMALL_G = {"image_size": 16, "image_channels": 3, "base_channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1,
               "attn_resolutions": (8,), "nz": 8, "z_emb_dim": 16, "n_mlp": 2}


def run_module(module: str, *args: str) -> int:
    """`python -m module args...` in this process; its exit status (0 when it returns)."""
    argv, sys.argv = sys.argv, [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    except SystemExit as exit_info:
        return exit_info.code
    finally:
        sys.argv = argv
    return 0


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    """The run directory of a 2-iteration class-conditional digits run."""
    root = tmp_path_factory.mktemp("conditional")
    with single_thread():
        train(compose_config(TINY_CONDITIONAL + [f"paths.data_dir={root / 'data'}"], output_dir=root / "run"))
    return root / "run"


# ----------------------------------------------------------------------------- the networks

@pytest.mark.parametrize("make", [
    lambda k: NCSNpp(**SMALL_G, num_classes=k),
    lambda k: WaveletNCSNpp(**SMALL_G, num_classes=k),
    lambda k: SmallDiscriminator(image_size=16, base_channels=8, t_emb_dim=16, num_classes=k),
    lambda k: LargeDiscriminator(image_size=16, base_channels=4, t_emb_dim=16, num_layers=3, num_classes=k),
    lambda k: ToyGenerator(hidden_dim=16, num_classes=k),
    lambda k: ToyDiscriminator(hidden_dim=16, num_classes=k),
], ids=["ncsnpp", "wavelet_ncsnpp", "small_d", "large_d", "toy_g", "toy_d"])
def test_num_classes_zero_is_the_unconditional_network_and_conditioning_only_adds_the_class_tables(make):
    torch.manual_seed(0)
    default = make(0).state_dict()
    conditional = make(10).state_dict()
    added = sorted(set(conditional) - set(default))
    assert len(added) == 1 and added[0].endswith(("class_embed.weight", "class_embedding.weight", "class_projection.weight"))
    assert set(default) <= set(conditional) and conditional[added[0]].shape[0] == 10
    changed = [k for k in default if conditional[k].shape != default[k].shape]
    assert changed in ([], ["mapping.layers.0.weight"], ["net.0.weight"])  # G: the first layer also sees embed(y)


def test_unconditional_outputs_do_not_change_and_labels_change_the_conditional_ones():
    x, t, z = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]), torch.randn(4, 8)
    torch.manual_seed(0)
    g = NCSNpp(**SMALL_G).eval()
    torch.manual_seed(0)
    g_again = NCSNpp(**SMALL_G, num_classes=0).eval()
    assert torch.equal(g(x, t, z), g_again(x, t, z))
    conditional = NCSNpp(**SMALL_G, num_classes=10)
    for module in conditional.modules():  # non-zero output layer, so the output depends on the label at once
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    y = torch.tensor([0, 1, 2, 3])
    assert not torch.allclose(conditional(x, t, z, y), conditional(x, t, z, y + 1))
    with pytest.raises(ValueError, match=r"the generator is class-conditional \(num_classes=10\): give it class labels"):
        conditional(x, t, z)
    with pytest.raises(ValueError, match=r"the generator is unconditional \(num_classes=0\): it takes no class labels"):
        g(x, t, z, y)


def test_projection_term_is_the_inner_product_of_the_class_vector_and_the_pooled_features():
    torch.manual_seed(0)
    d = SmallDiscriminator(image_size=16, base_channels=8, t_emb_dim=16, num_classes=5)
    torch.nn.init.normal_(d.final_conv.weight, std=0.1)  # zero-initialised: no features to project at first
    x_t, x_tp1, t = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    pooled = {}
    d.head.register_forward_hook(lambda module, inputs, output: pooled.update(phi=inputs[0].detach()))  # returns None
    y = torch.tensor([1, 1, 4])
    logits = d(x_t, t, x_tp1, y)
    phi = pooled["phi"]
    logits.sum().backward()
    grad = d.class_projection.weight.grad
    assert torch.allclose(grad[1], phi[0] + phi[1], atol=1e-5) and torch.allclose(grad[4], phi[2], atol=1e-5)
    assert torch.equal(grad[[0, 2, 3]], torch.zeros_like(grad[[0, 2, 3]]))  # other classes get no gradient
    # logits(y = a) - logits(y = b) = <e_a - e_b, φ>
    e = d.class_projection.weight.detach()
    difference = d(x_t, t, x_tp1, torch.tensor([0, 0, 0])) - d(x_t, t, x_tp1, torch.tensor([3, 3, 3]))
    assert torch.allclose(difference.flatten(), phi @ (e[0] - e[3]), atol=1e-4)


# ----------------------------------------------------------------------------- the model and training

def test_data_conditional_sets_model_num_classes_by_interpolation(compose, tmp_path):
    assert compose(["experiment=stacked_digits"], tmp_path).model.num_classes == 0
    assert compose(["experiment=stacked_digits", "data.conditional=true"], tmp_path).model.num_classes == 1000
    assert compose(["experiment=digits_conditional"], tmp_path).model.num_classes == 10
    assert compose(["experiment=gaussians25", "data.conditional=true"], tmp_path).model.generator.num_classes == 25
    cifar = compose(["experiment=cifar10", "data.conditional=true"], tmp_path)
    assert (cifar.model.num_classes, cifar.model.generator.num_classes, cifar.model.discriminator.num_classes) == (10, 10, 10)
    assert (cifar.model.lr_g, cifar.model.r1_gamma, cifar.diffusion.num_timesteps) == (1.6e-4, 0.02, 4)  # released


def test_labels_of_the_batch_reach_both_networks_in_both_steps(compose, tmp_path):
    cfg = compose(TINY_CONDITIONAL, tmp_path)
    model = instantiate(cfg.model, _convert_="partial")
    seen = {"g": [], "d": []}
    model.generator.register_forward_pre_hook(lambda m, args, kwargs: seen["g"].append(kwargs["y"]), with_kwargs=True)
    model.discriminator.register_forward_pre_hook(lambda m, args, kwargs: seen["d"].append(kwargs["y"]), with_kwargs=True)
    optimizers = [torch.optim.Adam(net.parameters()) for net in (model.discriminator, model.generator)]
    model.optimizers = lambda: optimizers
    model.manual_backward = lambda loss: loss.backward()
    x, y = torch.rand(8, 1, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    model.training_step((x, y), 0)
    assert len(seen["g"]) == 2 and len(seen["d"]) == 3  # D step: G once, D real + fake; G step: G, D
    assert all(torch.equal(labels, y) for labels in seen["g"] + seen["d"])


def test_conditional_digits_run_writes_conditional_metrics_and_a_grid_per_class(conditional_run):
    metrics = json.loads((conditional_run / "metrics.json").read_text())
    assert 0 <= metrics["conditional_accuracy"] <= 1 and metrics["intra_class_fid"] > 0
    assert {"fid", "precision", "recall"} <= set(metrics)
    assert metrics["metric_features"]["conditional"] == "digit-classifier"
    model = load_ddgan(conditional_run / "checkpoints" / "last.ckpt")
    assert model.num_classes == 10 and model.generator.mapping.class_embed.num_embeddings == 10
    grid = Image.open(next((conditional_run / "samples").glob("epoch*.png")))
    assert grid.height > 4 * grid.width  # 20 samples of classes i mod 10: 10 rows of 2


def test_cifar10_conditional_trains_at_a_tiny_size(tmp_path, monkeypatch):
    """experiment=cifar10 data.conditional=true: the released settings, CIFAR-10's labels (a fake train split here)."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        with open(folder / name, "wb") as file:
            pickle.dump({"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), "labels": list(range(8))}, file)
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, file)
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)  # the fake files have other checksums
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    cfg = compose_config(["experiment=cifar10", "data.conditional=true", "trainer=cpu", "trainer.devices=1", "trainer.max_epochs=1",
                          "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false", "logger=csv",
                          "callbacks=default", "data.download=false", f"paths.data_dir={tmp_path}",
                          "data.batch_size_per_device=4", "data.num_workers=0", "data.persistent_workers=false",
                          "model.generator.base_channels=8", "model.generator.channel_mult=[1,2]",
                          "model.generator.num_res_blocks=1", "model.generator.z_emb_dim=16",
                          "model.discriminator.base_channels=4", "model.discriminator.t_emb_dim=16",
                          "callbacks.sample_grid.num_samples=10"], output_dir=tmp_path / "run")
    train(cfg)
    model = load_ddgan(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.num_classes == 10 and model.iteration == 2
    assert model.sample(3, labels=torch.tensor([0, 5, 9])).shape == (3, 3, 32, 32)


def test_conditional_toy_mixture_reports_conditional_accuracy(tmp_path):
    cfg = compose_config(["experiment=gaussians25", "data.conditional=true", *TINY_TOY], output_dir=tmp_path / "run")
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["conditional_accuracy"] <= 1
    assert load_ddgan(tmp_path / "run" / "checkpoints" / "last.ckpt").generator.num_classes == 25


# ----------------------------------------------------------------------------- labelled data

def write_images(folder: Path, count: int, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((size, size, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_with_class_subfolders_gives_imagefolder_labels(tmp_path):
    for name, count in (("cat", 3), ("dog", 2)):
        write_images(tmp_path / "images" / name, count)
    data = ImageFolderDataModule(data_dir=str(tmp_path / "images"), image_size=8, batch_size_per_device=2,
                                 num_workers=0, conditional=True, num_classes=None)
    data.setup("fit")
    assert [data.train_dataset[i][1] for i in range(5)] == [0, 0, 0, 1, 1] and data.model_classes == 2
    unlabelled = ImageFolderDataModule(data_dir=str(tmp_path / "images"), image_size=8, batch_size_per_device=2,
                                       num_workers=0)
    unlabelled.setup("fit")
    assert {unlabelled.train_dataset[i][1] for i in range(5)} == {-1} and unlabelled.model_classes == 0
    cfg = compose_config(["experiment=stacked_digits", "data=image_folder", f"data.data_dir={tmp_path / 'images'}",
                          "data.conditional=true"])
    assert cfg.model.num_classes == 2  # counted from the subfolders


def test_lmdb_written_from_class_subfolders_stores_the_labels(tmp_path):
    from src.ddgan.data.folder_or_lmdb import FolderOrLMDBDataModule
    from src.prepare_lmdb import prepare_lmdb

    for name, count in (("a", 2), ("b", 3)):
        write_images(tmp_path / "images" / name, count)
    report = prepare_lmdb(tmp_path / "images", tmp_path / "labelled.lmdb", resolution=8, class_folders=True)
    assert report.classes == ["a", "b"] and report.labels == [0, 0, 1, 1, 1]
    data = FolderOrLMDBDataModule(data_dir=str(tmp_path / "labelled.lmdb"), image_size=8, batch_size_per_device=2,
                                  num_workers=0, conditional=True, num_classes=None)
    data.setup("fit")
    assert [data.train_dataset[i][1] for i in range(5)] == [0, 0, 1, 1, 1] and data.model_classes == 2
    cfg = compose_config(["experiment=celebahq256", f"data.data_dir={tmp_path / 'labelled.lmdb'}", "data.conditional=true"])
    assert cfg.model.num_classes == 2  # the classes the LMDB stores
    prepare_lmdb(tmp_path / "images", tmp_path / "plain.lmdb", resolution=8)
    plain = FolderOrLMDBDataModule(data_dir=str(tmp_path / "plain.lmdb"), image_size=8, batch_size_per_device=2,
                                   num_workers=0, conditional=True, num_classes=2)
    with pytest.raises(DataError, match=r"data.conditional=true but data dir .*plain.lmdb has no class labels"):
        plain.setup("fit")
    (tmp_path / "images" / "c").mkdir()
    with pytest.raises(DataError, match=r"class_folders=true: class subfolder 'c' of .* holds no images"):
        prepare_lmdb(tmp_path / "images", tmp_path / "x.lmdb", resolution=8, class_folders=True)


def test_digits_set_has_ten_labelled_grey_images():
    from src.ddgan.data.stacked import DigitsDataModule

    data = DigitsDataModule(image_size=32, num_channels=1, conditional=True, num_classes=10, batch_size_per_device=8)
    data.setup("fit")
    image, label = data.train_dataset[0]
    assert image.shape == (1, 32, 32) and -1 <= image.min() and image.max() <= 1 and 0 <= int(label) <= 9
    assert len(data.train_dataset) == 1797 and data.model_classes == 10


# ----------------------------------------------------------------------------- sampling, editing, pictures

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: the module is already imported
def test_sample_by_class_stores_labels_and_draws_one_grid_row_per_class(conditional_run, tmp_path):
    ckpt = conditional_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    assert run_module("src.sample", f"ckpt_path={ckpt}", "class_labels=[3,7]", "num_samples=5",
                      f"output_dir={out}", "batch_size=4") == 0
    with np.load(out / "samples.npz") as archive:
        assert archive["arr_0"].shape == (10, 32, 32, 1)
        assert archive["labels"].tolist() == [3] * 5 + [7] * 5
    grid = Image.open(out / "grid.png")
    assert grid.width > grid.height  # 2 rows of 5
    uniform = tmp_path / "uniform"
    assert run_module("src.sample", f"ckpt_path={ckpt}", "num_samples=12", f"output_dir={uniform}") == 0
    with np.load(uniform / "samples.npz") as archive:
        assert archive["labels"].tolist() == [i % 10 for i in range(12)]


def test_generated_batches_carry_the_labels_and_the_samples_follow_them(conditional_run):
    model = load_ddgan(conditional_run / "checkpoints" / "last.ckpt")
    (images, labels), = list(generated_batches(model, range(10, 16), batch_size=6, seed=3))
    assert labels.tolist() == [0, 1, 2, 3, 4, 5] and images.dtype == torch.uint8
    from src.ddgan.sampling import draw_samples
    same = draw_samples(model, [10, 11], seed=3, labels=torch.tensor([0, 1]))
    other = draw_samples(model, [10, 11], seed=3, labels=torch.tensor([5, 6]))
    assert not torch.equal(same, other)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_evaluate_scores_the_labelled_npz(conditional_run, tmp_path):
    ckpt = conditional_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "samples"
    assert run_module("src.sample", f"ckpt_path={ckpt}", "num_samples=40", f"output_dir={out}") == 0
    assert run_module("src.evaluate", f"ckpt_path={ckpt}", f"samples={out / 'samples.npz'}",
                      "metrics.names=[conditional]", f"output_dir={tmp_path / 'eval'}") == 0
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 <= record["conditional_accuracy"] <= 1 and record["intra_class_fid"] > 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_edit_and_visualize_by_class(conditional_run, tmp_path):
    ckpt = conditional_run / "checkpoints" / "last.ckpt"
    strokes = tmp_path / "strokes.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(strokes)
    assert run_module("src.edit", f"ckpt_path={ckpt}", f"input={strokes}", "start_step=2", "class_label=4",
                      "num_variations=3", f"output_dir={tmp_path / 'edit'}") == 0
    assert len(list((tmp_path / "edit" / "variations").glob("*.png"))) == 3
    assert run_module("src.visualize", f"ckpt_path={ckpt}", "class_label=2", "num_rows=2", "num_steps=3",
                      "gif=false", f"output_dir={tmp_path / 'vis'}") == 0
    assert (tmp_path / "vis" / "chain.png").is_file() and (tmp_path / "vis" / "interpolation.png").is_file()
    model = load_ddgan(ckpt)
    from src.ddgan.editing import edit
    image = torch.zeros(1, 32, 32)
    assert not torch.equal(edit(model, image, start_step=4, num_variations=2, seed=0, class_label=1),
                           edit(model, image, start_step=4, num_variations=2, seed=0, class_label=8))


# ----------------------------------------------------------------------------- conditional metrics

def test_conditional_scores_count_the_classifier_agreeing_with_the_asked_class():
    scores = ConditionalScores(num_classes=3)
    scores.update(torch.zeros(4, 2), torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 0]))
    assert scores.compute() == {"conditional_accuracy": 0.75, "intra_class_fid": None}
    with pytest.raises(ValueError, match=r"metric `conditional` needs a class-conditional model"):
        SampleQuality(None, ["conditional"])


# ----------------------------------------------------------------------------- bad input

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("args, message", [
    (["class_labels=[3,10]"], "class_labels=[3, 10] is invalid: the model's classes are 0..9"),
    (["class_labels=[-1]"], "class_labels=[-1] is invalid: the model's classes are 0..9"),
])
def test_sample_rejects_labels_outside_the_classes(conditional_run, tmp_path, capsys, args, message):
    code = run_module("src.sample", f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}", *args,
                      f"output_dir={tmp_path}")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in line, line
    assert not (tmp_path / "samples.npz").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_labels_for_an_unconditional_model_exit_2(compose, tmp_path, capsys):
    cfg = compose(["experiment=stacked_digits", "model.generator.base_channels=8", "model.generator.z_emb_dim=16",
                   "model.discriminator.base_channels=8", "model.discriminator.t_emb_dim=16"], tmp_path / "run")
    model = instantiate(cfg.model, _convert_="partial")
    model.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    ckpt = save_ddgan(model, tmp_path / "plain.ckpt")
    for module, arg, message in (("src.sample", "class_labels=[1]", "class_labels=[1] given to an unconditional model"),
                                 ("src.visualize", "class_label=1", "class_label=1 given to an unconditional model")):
        code = run_module(module, f"ckpt_path={ckpt}", arg, f"output_dir={tmp_path / 'out'}")
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in line, line


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_edit_rejects_a_class_label_outside_the_classes(conditional_run, tmp_path, capsys):
    strokes = tmp_path / "strokes.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(strokes)
    code = run_module("src.edit", f"ckpt_path={conditional_run / 'checkpoints' / 'last.ckpt'}", f"input={strokes}",
                      "start_step=2", "class_label=12", f"output_dir={tmp_path / 'edit'}")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "class_label=12 is invalid: the model's classes are 0..9" in line, line


def test_train_exits_2_with_one_line_for_classes_that_do_not_match_the_data(tmp_path):
    write_images(tmp_path / "images" / "cat", 2, size=32)
    (tmp_path / "images" / "dog").mkdir()
    (tmp_path / "flat").mkdir()
    write_images(tmp_path / "flat", 2, size=32)  # images but no class subfolders
    folder = ["data=image_folder", "data.image_size=32", "data.batch_size_per_device=2", "data.conditional=true"]
    cases = {
        "data.num_classes=7 does not match the data: DigitsDataModule has 10 classes; set data.num_classes=10":
            ["data.num_classes=7"],
        "model.num_classes=4 does not match the data (data.conditional=true and 10 classes): drop the "
        "model.num_classes override": ["model.num_classes=4"],
        "class subfolder 'dog' holds no image files; with data.conditional=true every subfolder of data_dir is a class":
            [*folder, f"data.data_dir={tmp_path / 'images'}"],
        f"data.conditional=true but data dir {tmp_path / 'flat'} has no class labels":
            [*folder, f"data.data_dir={tmp_path / 'flat'}", "data.num_classes=2"],
    }
    for message, overrides in cases.items():
        result = run_cli("experiment=digits_conditional", *overrides, f"paths.log_dir={tmp_path / 'logs'}")
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if "[ERROR]" in line]
        assert result.returncode == 2 and len(errors) == 1 and message in errors[0], output[-2000:]


def test_a_mixture_with_another_number_of_modes_is_rejected():
    from src.ddgan.data.gaussians import GaussianMixtureDataModule

    with pytest.raises(DataError, match=r"data.num_classes=25 does not match the data: the mixture of 2 modes has 2 "
                                        r"classes; set data.num_classes=2"):
        GaussianMixtureDataModule(centers=[[0, 0], [1, 1]], conditional=True, num_classes=25)
