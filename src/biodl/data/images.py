"""Opening one image file, with every way it can fail said in words.

Every reader of image files in biodl (the decoders behind the cache, the size probe, the
vessel loaders, ``predict`` and ``explain``) opens files through :func:`open_image`, so the
same faults are caught everywhere: an OS error on the file (a symbolic-link loop, a dangling
link, a folder where a file should be, permission), an empty, truncated or unidentified file,
and a decompression bomb (a small file that declares more pixels than Pillow's
``Image.MAX_IMAGE_PIXELS``, 89.5 million by default). Each becomes an :class:`~biodl.errors.ImageFault`
whose ``problem`` the caller reports (or, under ``data.skip_bad``, counts).
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import ImageFault, describe_os_error, path_problem
from .dicom import SUFFIXES as DICOM_SUFFIXES

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["open_image", "image_size", "pixel_limit"]


def pixel_limit() -> int | None:
    """The most pixels an image may declare (Pillow's ``Image.MAX_IMAGE_PIXELS``; None: no limit)."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _bomb(w: int, h: int) -> ImageFault:
    return ImageFault(f"declares {w} x {h} pixels, over the limit of {pixel_limit():,} (a decompression bomb?)")


def _check_file(path: Path) -> None:
    """An ImageFault unless ``path`` is a non-empty regular file (links followed)."""
    try:
        st = os.stat(path)  # follows links: a loop or a dangling link fails here
    except OSError:
        raise ImageFault(f"unreadable ({path_problem(path)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageFault("is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageFault("not a regular file")
    if st.st_size == 0:
        raise ImageFault("empty file")


def _open(path: Path, load: bool) -> "PILImage.Image":
    """The image at ``path``, opened (and with ``load``, decoded); every fault an ImageFault.
    A DICOM file (by its suffix) is decoded to 8 bits by :func:`biodl.data.dicom.read_dicom`."""
    from PIL import Image, UnidentifiedImageError

    _check_file(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        from .dicom import read_dicom

        return read_dicom(path)
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageFault("not an image (unidentified format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFault(f"declares more than {pixel_limit():,} pixels (a decompression bomb?)") from None
    except OSError as exc:
        raise ImageFault(f"unreadable ({describe_os_error(exc)})") from None
    except (SyntaxError, ValueError, EOFError) as exc:
        raise ImageFault(f"unreadable ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})") from None
    try:
        w, h = im.size
        limit = pixel_limit()
        if limit is not None and w * h > limit:
            raise _bomb(w, h)
        if load:
            im.load()
        return im
    except ImageFault:
        im.close()
        raise
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        im.close()
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ImageFault(f"unreadable ({detail})") from None


@contextmanager
def open_image(path: str | Path) -> Iterator["PILImage.Image"]:
    """The decoded Pillow image at ``path`` (pixels loaded), closed afterwards. A fault of the
    file raises :class:`ImageFault`; faults in the ``with`` body pass through unchanged."""
    im = _open(Path(path), load=True)
    try:
        yield im
    finally:
        im.close()


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        from .dicom import dicom_size

        _check_file(path)
        return dicom_size(path)
    im = _open(path, load=False)
    try:
        return im.size
    finally:
        im.close()
