"""Write a folder of images into an LMDB for training.

    python -m src.prepare_lmdb input=<folder> output=<lmdb dir> resolution=256 [num_workers=8]
        [skip_bad_images=true] [allow_upscale=true] [overwrite=true]

Images are resized (shorter side) + center-cropped to `resolution` and stored as PNG; the layout is
documented in src/ddgan/data/lmdb_format.py. Output appears only when complete. Errors print one line.
"""
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from src.ddgan.cli import CONFIG_DIR, fail
from src.ddgan.data.errors import DataError
from src.ddgan.data.lmdb_writer import PrepareReport, write_image_lmdb


def prepare_lmdb(
    input: str | Path,  # folder of images, searched recursively
    output: str | Path,  # LMDB directory to create
    *,
    resolution: int = 256,  # side of the stored square images
    skip_bad_images: bool = False,  # skip unreadable / too-small files instead of failing
    allow_upscale: bool = False,  # upscale images smaller than resolution instead of failing
    overwrite: bool = False,  # replace an existing output
    num_workers: int = 0,  # image processing processes (0: in this process)
    class_folders: bool = False,  # every subfolder of input is a class: store the labels (data.conditional=true)
) -> PrepareReport:
    """The prepare command as a function (what the CLI runs)."""
    return write_image_lmdb(input, output, resolution=resolution, skip_bad_images=skip_bad_images,
                            allow_upscale=allow_upscale, overwrite=overwrite, num_workers=num_workers,
                            class_folders_as_labels=class_folders)


@hydra.main(config_path=str(CONFIG_DIR), config_name="prepare_lmdb", version_base="1.3")
def main(config: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        report = prepare_lmdb(
            config.input,
            config.output,
            resolution=config.resolution,
            skip_bad_images=config.skip_bad_images,
            allow_upscale=config.allow_upscale,
            overwrite=config.overwrite,
            num_workers=config.num_workers,
            class_folders=config.class_folders,
        )
    except DataError as error:
        fail(str(error))
    print(f"wrote {report.count} images ({report.resolution}px) to {config.output}; skipped {len(report.skipped)}")


if __name__ == "__main__":
    main()
