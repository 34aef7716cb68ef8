"""Data layer: every datamodule built from tiny data made here, the LMDB prepare command, each error message."""
import io
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader

import src.ddgan.data.cifar10 as cifar10_module
import src.ddgan.data.lmdb_dataset as lmdb_dataset_module
import src.ddgan.data.mnist as mnist_module
from src.ddgan.data.cifar10 import CIFAR10DataModule
from src.ddgan.data.datamodule import RandomHorizontalFlip
from src.ddgan.data.digits import load_digit_images
from src.ddgan.data.errors import DataError
from src.ddgan.data.folder_or_lmdb import FolderOrLMDBDataModule
from src.ddgan.data.gaussians import GaussianMixtureDataModule
from src.ddgan.data.image_folder import ImageFolderDataModule
from src.ddgan.data.lmdb_dataset import LMDBImageDataset
from src.ddgan.data.lmdb_format import META_KEY
from src.ddgan.data.resumable import ResumableShuffle
from src.ddgan.data.stacked import StackedDigitsDataModule, StackedDigitsDataset, StackedMNISTDataModule
from src.prepare_lmdb import main as prepare_lmdb_main
from src.prepare_lmdb import prepare_lmdb

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 16  # training resolution in these tests
NUM_GOOD = 5  # good images in a test folder
LOADER_KWARGS = {"batch_size_per_device": 2, "num_workers": 0, "pin_memory": False, "persistent_workers": False}
FOLDER_KWARGS = LOADER_KWARGS | {"resize": True}  # make_image_folder's images have several sizes


# ---------------------------------------------------------------- helpers


def random_image(rng: np.random.Generator, width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)


def make_image_folder(root: Path, *, corrupt: bool = False, too_small: bool = False) -> Path:
    """NUM_GOOD images of 20x24 or larger (PNG, JPEG, grey, nested), plus optional bad files."""
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    random_image(rng, 20, 24).save(root / "a.png")
    random_image(rng, 24, 20).save(root / "b.png")
    random_image(rng, 20, 20, mode="L").save(root / "c_grey.png")
    random_image(rng, 32, 20).save(root / "sub" / "d.jpg", quality=95)
    random_image(rng, 16, 16).save(root / "sub" / "e.PNG")
    (root / "notes.txt").write_text("not an image, ignored by extension")
    if corrupt:
        (root / "corrupt.png").write_bytes(b"definitely not a png")
    if too_small:
        random_image(rng, 8, 12).save(root / "tiny.png")
    return root


def expect_data_error(action: Callable[[], object], *fragments: str) -> str:
    """Run `action`, expecting a one-line DataError that contains every fragment."""
    with pytest.raises(DataError) as excinfo:
        action()
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def first_batch(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def check_batch(batch: tuple[torch.Tensor, torch.Tensor], *, batch_size: int, size: int, channels: int = 3) -> None:
    images, labels = batch
    assert images.shape == (batch_size, channels, size, size) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert labels.shape == (batch_size,) and labels.dtype == torch.long


def write_raw_lmdb(path: Path, items: dict[bytes, bytes]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()
    return path


def encoded_bytes(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


# ---------------------------------------------------------------- folders of images


def test_image_folder_batches(tmp_path):
    folder = make_image_folder(tmp_path / "images")
    datamodule = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, hflip=True, **FOLDER_KWARGS)
    assert (datamodule.image_size, datamodule.sample_shape) == (SIZE, [3, SIZE, SIZE])
    check_batch(first_batch(datamodule), batch_size=2, size=SIZE)
    assert len(datamodule.train_dataset) == NUM_GOOD
    assert torch.cat([labels for _, labels in datamodule.train_dataloader()]).eq(-1).all()


def test_image_folder_bad_files_are_named(tmp_path):
    corrupt = make_image_folder(tmp_path / "corrupt", corrupt=True)
    datamodule = ImageFolderDataModule(data_dir=str(corrupt), image_size=SIZE, **FOLDER_KWARGS)
    expect_data_error(lambda: datamodule.setup("fit"), str(corrupt / "corrupt.png"), "skip_bad_images=true")

    small = make_image_folder(tmp_path / "small", too_small=True)
    datamodule = ImageFolderDataModule(data_dir=str(small), image_size=SIZE, **FOLDER_KWARGS)
    expect_data_error(lambda: datamodule.setup("fit"), str(small / "tiny.png"), "8x12", "resolution 16",
                      "allow_upscale=true")


def test_image_folder_skip_bad_images_and_upscale(tmp_path):
    folder = make_image_folder(tmp_path / "images", corrupt=True, too_small=True)
    skipping = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, skip_bad_images=True, **FOLDER_KWARGS)
    skipping.setup("fit")
    assert len(skipping.train_dataset) == NUM_GOOD and len(skipping.skipped_images) == 2

    upscaling = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, skip_bad_images=True,
                                      allow_upscale=True, max_images=4, **FOLDER_KWARGS)
    check_batch(first_batch(upscaling), batch_size=2, size=SIZE)
    assert len(upscaling.train_dataset) == 4 and len(upscaling.skipped_images) == 1  # stops scanning at 4


def test_image_folder_truncated_file_fails_at_load_or_is_replaced(tmp_path):
    folder = make_image_folder(tmp_path / "images")
    (folder / "a.png").write_bytes((folder / "a.png").read_bytes()[:80])  # header intact, pixels cut
    strict = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, **FOLDER_KWARGS)
    strict.setup("fit")  # the header scan passes
    expect_data_error(lambda: strict.train_dataset[0], str(folder / "a.png"))

    lenient = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, skip_bad_images=True, hflip=False,
                                    **FOLDER_KWARGS)
    lenient.setup("fit")
    assert torch.equal(lenient.train_dataset[0][0], lenient.train_dataset[1][0])  # a.png -> next file


def test_missing_data_dirs_say_how_to_fix(tmp_path):
    missing = tmp_path / "nowhere"
    folder_module = ImageFolderDataModule(data_dir=str(missing), image_size=SIZE, **LOADER_KWARGS)
    expect_data_error(folder_module.prepare_data, str(missing), "does not exist", "data.data_dir")
    celeba = FolderOrLMDBDataModule(data_dir=str(missing), image_size=SIZE, **LOADER_KWARGS)
    expect_data_error(lambda: celeba.setup("fit"), str(missing), "python -m src.prepare_lmdb", "resolution=16")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_data_error(lambda: ImageFolderDataModule(data_dir=str(empty), image_size=SIZE, **LOADER_KWARGS).setup(),
                      "no image files", str(empty))
    folder = make_image_folder(tmp_path / "images")
    as_lmdb = FolderOrLMDBDataModule(data_dir=str(folder), format="lmdb", image_size=SIZE, **LOADER_KWARGS)
    expect_data_error(lambda: as_lmdb.setup("fit"), "not an LMDB", "data.format=folder")
    expect_data_error(lambda: FolderOrLMDBDataModule(data_dir=str(folder), format="zip"), "data.format='zip'")


def test_too_few_images_for_a_batch(tmp_path):
    folder = make_image_folder(tmp_path / "images")
    datamodule = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, **{**FOLDER_KWARGS,
                                                                                "batch_size_per_device": 8})
    expect_data_error(lambda: datamodule.setup("fit"), str(folder), "5 images", "batch_size_per_device=8", "needs 8")
    fits_one_device = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, **{**FOLDER_KWARGS,
                                                                                     "batch_size_per_device": 3})
    fits_one_device.setup("fit")
    expect_data_error(lambda: fits_one_device.setup("fit", world_size=2), "5 images", "on each of 2 device(s) needs 6")


def square_pngs(root: Path, count: int, side: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        random_image(rng, side, side).save(root / f"{index}.png")
    return root


def test_images_of_another_size_need_image_size_or_resize(tmp_path):
    folder = square_pngs(tmp_path / "images24", 3, 24)
    strict = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, **LOADER_KWARGS)
    expect_data_error(lambda: strict.setup("fit"), str(folder / "0.png"), "is 24x24", "data.image_size=16 expects 16x16",
                      "set data.image_size=24", "data.resize=true")
    check_batch(first_batch(ImageFolderDataModule(data_dir=str(folder), image_size=24, **LOADER_KWARGS)),
                batch_size=2, size=24)
    check_batch(first_batch(ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, **FOLDER_KWARGS)),
                batch_size=2, size=SIZE)
    oblong = make_image_folder(tmp_path / "mixed")  # a.png is 20x24: no single image_size fits
    message = expect_data_error(ImageFolderDataModule(data_dir=str(oblong), image_size=SIZE, **LOADER_KWARGS).setup,
                                "is 20x24", "set data.resize=true")
    assert "set data.image_size" not in message


def test_bad_image_folders_stop_training_before_the_model_is_built(compose, tmp_path):
    from src.train import train

    folder = square_pngs(tmp_path / "images", 3, 24)
    folder_data = ["data=image_folder", f"data.data_dir={folder}", "data.num_workers=0", "data.batch_size_per_device=2"]
    # the toy model does not fit these images: a DataError (not ConfigError) shows that the data is checked first
    expect_data_error(lambda: train(compose(folder_data + ["data.image_size=16"], tmp_path / "run")),
                      "set data.image_size=24")
    ddp = ["data.image_size=24", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
    expect_data_error(lambda: train(compose(folder_data + ddp, tmp_path / "run")), f"data dir {folder} has 3 images",
                      "on each of 2 device(s) needs 4")
    assert not (tmp_path / "run").exists()
    result = subprocess.run([sys.executable, "-m", "src.train", *folder_data, "data.image_size=16",
                             f"paths.log_dir={tmp_path / 'logs'}"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "data.image_size" in line]
    assert "is 24x24" in line and "set data.image_size=24 or set data.resize=true" in line


# ---------------------------------------------------------------- LMDBs


def test_prepare_lmdb_function_round_trip(tmp_path):
    folder = make_image_folder(tmp_path / "images", corrupt=True, too_small=True)
    output = tmp_path / "out" / "celebahq.lmdb"
    expect_data_error(lambda: prepare_lmdb(folder, output, resolution=SIZE), str(folder / "corrupt.png"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written

    report = prepare_lmdb(folder, output, resolution=SIZE, skip_bad_images=True)
    assert report.count == NUM_GOOD and len(report.skipped) == 2
    assert sorted(path.name for path in output.parent.iterdir()) == ["celebahq.lmdb"]  # temp dir renamed away
    expect_data_error(lambda: prepare_lmdb(folder, output, resolution=SIZE), "already exists", "overwrite=true")

    from_lmdb = FolderOrLMDBDataModule(data_dir=str(output), image_size=SIZE, hflip=False, **LOADER_KWARGS)
    from_folder = ImageFolderDataModule(data_dir=str(folder), image_size=SIZE, hflip=False, skip_bad_images=True,
                                        **FOLDER_KWARGS)
    check_batch(first_batch(from_lmdb), batch_size=2, size=SIZE)
    from_folder.setup("fit")
    assert from_lmdb.resolved_format() == "lmdb" and len(from_lmdb.train_dataset) == NUM_GOOD
    for index in range(NUM_GOOD):  # PNG is lossless: same pixels as resizing the folder on the fly
        assert torch.equal(from_lmdb.train_dataset[index][0], from_folder.train_dataset[index][0])
    expect_data_error(lambda: LMDBImageDataset(output, image_size=2 * SIZE), "holds 16px images",
                      "image_size=32", "resolution=32", "allow_upscale=true")


def test_prepare_lmdb_command_line(tmp_path, monkeypatch, capsys):
    folder = make_image_folder(tmp_path / "images")
    output = tmp_path / "church.lmdb"
    command = [sys.executable, "-m", "src.prepare_lmdb", f"input={folder}", f"output={output}",
               f"resolution={SIZE}", "num_workers=2"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"wrote {NUM_GOOD} images" in result.stdout
    assert len(LMDBImageDataset(output, image_size=SIZE)) == NUM_GOOD

    (folder / "corrupt.png").write_bytes(b"broken")  # errors: one line on stderr, exit code 2
    monkeypatch.setattr(sys, "argv", ["prepare_lmdb", f"input={folder}", f"output={tmp_path / 'again.lmdb'}",
                                      f"resolution={SIZE}", "num_workers=0"])
    with pytest.raises(SystemExit) as excinfo:
        prepare_lmdb_main()
    assert excinfo.value.code == 2
    stderr_lines = capsys.readouterr().err.strip().splitlines()
    assert len(stderr_lines) == 1 and "corrupt.png" in stderr_lines[0]
    assert not (tmp_path / "again.lmdb").exists()


def test_lsun_style_lmdb_first_images_in_key_order(tmp_path):
    rng = np.random.default_rng(1)
    ids = [bytes(f"{rng.integers(1 << 60):016x}", "ascii") for _ in range(7)]
    images = {key: random_image(rng, 24, 20) for key in ids}
    encoded = {key: encoded_bytes(image, "WEBP" if i % 2 else "JPEG") for i, (key, image) in enumerate(images.items())}
    path = write_raw_lmdb(tmp_path / "church_outdoor_train_lmdb", encoded)

    datamodule = FolderOrLMDBDataModule(data_dir=str(path), image_size=SIZE, max_images=5, hflip=True, **LOADER_KWARGS)
    check_batch(first_batch(datamodule), batch_size=2, size=SIZE)
    dataset = datamodule.train_dataset.dataset  # under the flip wrapper
    assert dataset.layout.kind == "encoded" and dataset.layout.keys == sorted(ids)[:5]

    too_big = FolderOrLMDBDataModule(data_dir=str(path), image_size=32, **LOADER_KWARGS)
    expect_data_error(lambda: too_big.setup("fit"), "is 24x20, smaller than resolution 32", str(path))


def test_nvae_raw_lmdb(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    path = write_raw_lmdb(tmp_path / "nvae", {str(i).encode(): pixels[i].tobytes() for i in range(3)})
    dataset = LMDBImageDataset(path, image_size=SIZE)
    assert dataset.layout.kind == "raw_rgb" and len(dataset) == 3
    expected = torch.from_numpy(pixels[2]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(dataset[2][0], expected)


def test_wrong_format_lmdbs_are_reported(tmp_path):
    not_images = write_raw_lmdb(tmp_path / "texts", {b"hello": b"not an image at all"})
    expect_data_error(lambda: LMDBImageDataset(not_images, image_size=SIZE), str(not_images), "unknown format",
                      "prepare_lmdb")
    foreign_meta = json.dumps({"format": "other-tool", "version": 3, "count": 1, "resolution": 16}).encode()
    other = write_raw_lmdb(tmp_path / "other", {META_KEY: foreign_meta, b"00000000": b"x"})
    expect_data_error(lambda: LMDBImageDataset(other, image_size=SIZE), "'other-tool'", "'ddgan-image-lmdb'")
    empty = write_raw_lmdb(tmp_path / "empty", {})
    expect_data_error(lambda: LMDBImageDataset(empty, image_size=SIZE), "is empty")


def test_lmdb_opens_lazily_in_two_workers(tmp_path):
    output = tmp_path / "faces.lmdb"
    prepare_lmdb(make_image_folder(tmp_path / "images"), output, resolution=SIZE)
    dataset = LMDBImageDataset(output, image_size=SIZE)
    assert torch.equal(pickle.loads(pickle.dumps(dataset))[1][0], dataset[1][0])  # pickles without a handle
    assert lmdb_dataset_module._shared_envs  # open here now; closed before the workers fork, reopened by each

    datamodule = FolderOrLMDBDataModule(data_dir=str(output), image_size=SIZE, batch_size_per_device=2, num_workers=2,
                                       pin_memory=False, persistent_workers=False, prefetch_factor=2)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert loader.num_workers == 2 and loader.drop_last and isinstance(loader.sampler, ResumableShuffle)
    assert loader.prefetch_factor == 2 and not loader.persistent_workers  # persistent ones outlive the test
    batches = list(loader)
    assert len(batches) == NUM_GOOD // 2
    for batch in batches:
        check_batch(batch, batch_size=2, size=SIZE)
    assert not lmdb_dataset_module._shared_envs  # closed at fork ...
    check_batch(next(iter(DataLoader(dataset, batch_size=2))), batch_size=2, size=SIZE)  # ... and reopened


# ---------------------------------------------------------------- stacked digits (1000 modes)


def fake_mnist(num_digits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (M, 28, 28): digit k is a constant 20 + 20k square in the middle; labels a permutation of 0..9."""
    digits = torch.zeros(num_digits, 28, 28, dtype=torch.uint8)
    for k in range(num_digits):
        digits[k, 4:24, 4:24] = 20 + 20 * k
    return digits, torch.tensor([(3 * k + 1) % 10 for k in range(num_digits)])


def test_stacking_fake_mnist_labels_and_determinism():
    digits, labels = fake_mnist()
    dataset = StackedDigitsDataset(F.pad(digits, (2, 2, 2, 2)), labels, num_images=64, seed=3)
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (3, 32, 32) and image.min() >= -1 and image.max() <= 1
        assert image[:, :2].eq(-1).all() and image[:, :, -2:].eq(-1).all()  # 2 px black padding
        source = [round((float(image[c, 16, 16]) + 1) * 127.5 - 20) // 20 for c in range(3)]  # digit per channel
        assert label == 100 * labels[source[0]] + 10 * labels[source[1]] + labels[source[2]]
    again = StackedDigitsDataset(F.pad(digits, (2, 2, 2, 2)), labels, num_images=64, seed=3)
    other = StackedDigitsDataset(F.pad(digits, (2, 2, 2, 2)), labels, num_images=64, seed=4)
    assert torch.equal(dataset.triples, again.triples) and not torch.equal(dataset.triples, other.triples)


def test_stackedmnist_datamodule(tmp_path, monkeypatch):
    expect_data_error(StackedMNISTDataModule(data_dir=str(tmp_path), download=False).prepare_data,
                      str(tmp_path), "data.download=true")

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            self.data, self.targets = fake_mnist()

    monkeypatch.setattr(mnist_module, "MNIST", FakeMNIST)
    datamodule = StackedMNISTDataModule(data_dir=str(tmp_path), num_images=10, **LOADER_KWARGS)
    assert (datamodule.image_size, datamodule.sample_shape) == (32, [3, 32, 32])
    check_batch(first_batch(datamodule), batch_size=2, size=32)
    assert len(datamodule.train_dataset) == 10


def test_stacked_digits_1000_modes_from_sklearn():
    datamodule = StackedDigitsDataModule(image_size=SIZE, num_images=300, seed=0, **LOADER_KWARGS)
    check_batch(first_batch(datamodule), batch_size=2, size=SIZE)
    digits, digit_labels = load_digit_images(SIZE)
    dataset = datamodule.train_dataset
    for index in range(0, 300, 7):
        image, label = dataset[index]
        a, b, c = dataset.triples[index].tolist()
        assert torch.equal(image, torch.cat([digits[a], digits[b], digits[c]]))
        assert label == 100 * digit_labels[a] + 10 * digit_labels[b] + digit_labels[c]

    same = StackedDigitsDataModule(image_size=SIZE, num_images=300, seed=0, **LOADER_KWARGS)
    other = StackedDigitsDataModule(image_size=SIZE, num_images=300, seed=1, **LOADER_KWARGS)
    same.setup(), other.setup()
    assert torch.equal(same.train_dataset[5][0], dataset[5][0])
    assert not torch.equal(other.train_dataset.triples, dataset.triples)

    full = StackedDigitsDataModule(**LOADER_KWARGS)  # default 60k images cover all 1000 modes
    full.setup()
    modes = (full.train_dataset.digit_labels[full.train_dataset.triples] * torch.tensor([100, 10, 1])).sum(1)
    assert len(full.train_dataset) == 60_000 and modes.unique().numel() == 1000


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_without_download_stops_with_the_fix(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "cifar10"), download=False, **LOADER_KWARGS)
    expect_data_error(datamodule.prepare_data, str(tmp_path / "cifar10"), "data.download=true")
    expect_data_error(lambda: datamodule.setup("fit"), "data.download=true")


def test_cifar10_datamodule_with_fake_torchvision_set(tmp_path, monkeypatch):
    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            self.data = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
            self.targets = [0, 1, 2, 3, 4, 5]

    monkeypatch.setattr(cifar10_module, "CIFAR10", FakeCIFAR10)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), hflip=False, seed=0, **LOADER_KWARGS)
    datamodule.prepare_data()
    images, labels = first_batch(datamodule)
    check_batch((images, labels), batch_size=2, size=32)
    expected = torch.from_numpy(FakeCIFAR10("", True, False).data[labels[0]]).permute(2, 0, 1) / 127.5 - 1
    assert torch.equal(images[0], expected.float())  # label k is image k: pixels and labels stay paired


# ---------------------------------------------------------------- shared plumbing and configs


def test_random_horizontal_flip_flips_about_half():
    image = torch.arange(4.0).view(1, 1, 4).expand(3, 4, 4)  # left-right asymmetric
    flipping = RandomHorizontalFlip([(image, 0)] * 200)
    flipped = sum(torch.equal(flipping[i][0], image.flip(-1)) for i in range(200))
    assert 60 < flipped < 140


def test_loader_options_follow_num_workers():
    def loader(num_workers: int):
        return StackedDigitsDataModule(image_size=8, num_images=16, num_workers=num_workers, persistent_workers=True,
                                       prefetch_factor=4, batch_size_per_device=2).train_dataloader()

    in_process, with_workers = loader(0), loader(2)  # not iterated: no worker starts
    assert not in_process.persistent_workers and in_process.prefetch_factor is None
    assert with_workers.persistent_workers and with_workers.prefetch_factor == 4


def test_loader_shuffle_is_seeded():
    def order(seed: int) -> list[int]:
        datamodule = StackedDigitsDataModule(image_size=8, num_images=16, seed=seed, **LOADER_KWARGS)
        return torch.cat([labels for _, labels in datamodule.train_dataloader()]).tolist()

    assert order(0) == order(0) and order(0) != order(1)


@pytest.mark.parametrize(
    ("name", "class_name", "image_size"),
    [("cifar10", "CIFAR10DataModule", 32), ("stackedmnist", "StackedMNISTDataModule", 32),
     ("stacked_digits", "StackedDigitsDataModule", 32), ("celebahq256", "FolderOrLMDBDataModule", 256),
     ("lsun_church256", "FolderOrLMDBDataModule", 256), ("image_folder", "ImageFolderDataModule", 256)],
)
def test_data_configs_instantiate(compose, tmp_path, name, class_name, image_size):
    config = compose([f"data={name}", "seed=7", f"paths.data_dir={tmp_path}"], tmp_path)  # with data/loader/default.yaml
    datamodule = instantiate(config.data)
    assert type(datamodule).__name__ == class_name
    assert (datamodule.image_size, datamodule.sample_shape, datamodule.seed) == (image_size, [3, image_size, image_size], 7)
    if "data_dir" in config.data:
        assert str(datamodule.data_dir).startswith(str(tmp_path))


# ---------------------------------------------------------------- the sample shape, declared once


def test_the_model_reads_the_sample_shape_the_data_config_declares(compose, tmp_path):
    digits = compose(["experiment=stacked_digits", "data.image_size=16"], tmp_path)
    assert digits.data.sample_shape == [3, 16, 16] and digits.model.sample_shape == [3, 16, 16]
    assert (digits.model.generator.image_size, digits.model.generator.image_channels) == (16, 3)
    assert (digits.model.discriminator.image_size, digits.model.discriminator.image_channels) == (16, 3)
    assert instantiate(digits.data).sample_shape == [3, 16, 16]
    toy = compose(["data.scale=2"], tmp_path)  # the toy's data_std follows the scale the networks see
    assert (toy.model.sample_shape, toy.model.generator.data_dim, toy.model.discriminator.data_dim) == ([2], 2, 2)
    assert toy.model.generator.data_std == 2 * toy.data.coordinate_std == 5.66


def test_a_declared_sample_shape_that_the_data_does_not_yield_fails_with_the_fix():
    expect_data_error(lambda: StackedDigitsDataModule(image_size=SIZE, sample_shape=[3, 32, 32], **LOADER_KWARGS),
                      "data.sample_shape=[3, 32, 32]", "StackedDigitsDataModule yields samples of shape [3, 16, 16]",
                      "set data.sample_shape=[3, 16, 16]")
    expect_data_error(lambda: GaussianMixtureDataModule(sample_shape=[3]), "data.sample_shape=[3]", "[2]")
    assert StackedDigitsDataModule(image_size=SIZE, sample_shape=[3, SIZE, SIZE]).sample_shape == [3, SIZE, SIZE]


def test_mixture_scale_is_applied_to_batches_and_undone_for_metrics(caplog, monkeypatch):
    plain, scaled = (GaussianMixtureDataModule(batch_size_per_device=8, iterations_per_epoch=1, scale=s) for s in (1, 2))
    plain.setup(), scaled.setup()
    (points, modes), (scaled_points, scaled_modes) = next(iter(plain.train_dataloader())), next(iter(scaled.train_dataloader()))
    assert torch.equal(scaled_points, 2 * points) and torch.equal(scaled_modes, modes)
    assert torch.equal(scaled.mixture.from_network(scaled_points), points)
    assert torch.equal(scaled.mixture.network_centers(), 2 * plain.centers)
    assert abs(plain.mixture.coordinate_std() - 2.83) < 0.01 * 2.83  # data/gaussians25.yaml's coordinate_std
    logger = logging.getLogger("src.ddgan.data.gaussians")  # an earlier in-process Hydra run may have disabled it
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level("WARNING", logger=logger.name):
        GaussianMixtureDataModule(centers=[[0, 0], [6, 0]], coordinate_std=2.83)
    assert "give 2.12" in caplog.text and "set data.coordinate_std=2.12" in caplog.text  # sqrt((9 + 0) / 2 + std²)


def test_datamodule_names_in_configs_stored_before_still_build(tmp_path):
    for name in ("CelebAHQ256DataModule", "LSUNChurch256DataModule"):  # now data configs of FolderOrLMDBDataModule
        datamodule = instantiate({"_target_": f"src.ddgan.data.folder_or_lmdb.{name}", "data_dir": str(tmp_path),
                                  "format": "auto", "image_size": 256, "resize": True, "hflip": True, "max_images": None,
                                  "skip_bad_images": False, "allow_upscale": False, "seed": 0, **LOADER_KWARGS})
        assert isinstance(datamodule, FolderOrLMDBDataModule) and datamodule.sample_shape == [3, 256, 256]
