"""Image files and encoded bytes: list, check, decode, fit to a square, encode (PIL only, no torch)."""
import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".gif")
RESAMPLE = Image.Resampling.LANCZOS  # antialiased; used for every resize, down or up
_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(name: str, error: Exception) -> DataError:
    reason = "not a recognised image format" if isinstance(error, UnidentifiedImageError) else str(error)
    return DataError(f"unreadable image {name}: {reason}; remove it or set skip_bad_images=true")


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of `root` in label order (sorted names; hidden ones skipped); [] if root is no folder
    (torchvision's ImageFolder convention)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def list_image_files(root: Path) -> list[Path]:
    """Every image file under `root` (recursive, by extension, case-insensitive), in sorted path order."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")
    )


def read_image_size(source: Path | bytes, name: str) -> tuple[int, int]:
    """(width, height) from the image header only; DataError naming `name` if it is not a readable image."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.size
    except _DECODE_ERRORS as error:
        raise _unreadable(name, error) from error


def decode_rgb(source: Path | bytes, name: str) -> Image.Image:
    """Fully decode an image file or encoded bytes to RGB (EXIF rotation applied); DataError names `name`."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except _DECODE_ERRORS as error:
        raise _unreadable(name, error) from error


def check_large_enough(size: tuple[int, int], resolution: int, name: str, *, allow_upscale: bool) -> None:
    """DataError if the shorter side of `size` (w, h) is below `resolution` and upscaling is not allowed."""
    if min(size) < resolution and not allow_upscale:
        raise DataError(
            f"image {name} is {size[0]}x{size[1]}, smaller than resolution {resolution}; "
            "remove it, set skip_bad_images=true, or set allow_upscale=true"
        )


def check_size(size: tuple[int, int], resolution: int, name: str, *, resize: bool, allow_upscale: bool) -> None:
    """DataError unless an image of `size` (w, h) can serve at resolution x resolution: exactly that size, or, with
    resize, a shorter side of at least `resolution` (any, with allow_upscale)."""
    if resize:
        check_large_enough(size, resolution, name, allow_upscale=allow_upscale)
    elif size != (resolution, resolution):
        square = f"set data.image_size={size[0]} or " if size[0] == size[1] else ""
        raise DataError(f"image {name} is {size[0]}x{size[1]}, but data.image_size={resolution} expects "
                        f"{resolution}x{resolution} images: {square}set data.resize=true (resize + center crop)")


def fit_square(image: Image.Image, resolution: int, name: str, *, allow_upscale: bool) -> Image.Image:
    """Resize the shorter side to `resolution` and center-crop to resolution x resolution."""
    check_large_enough(image.size, resolution, name, allow_upscale=allow_upscale)
    if image.size == (resolution, resolution):
        return image
    return ImageOps.fit(image, (resolution, resolution), method=RESAMPLE, centering=(0.5, 0.5))


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of a PIL image (lossless)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
