"""Image sets from files: ImageFolder trees, a CSV beside an image folder, and patient trees.

Every image is decoded once (Pillow), converted to RGB and resized to ``size`` x ``size``.
Faults are collected over the whole set and reported together: a zero-byte, truncated or
unreadable file, a class folder with no images, a CSV id that names a missing file or escapes
the image folder. With ``skip_bad=True`` unreadable images are left out and counted instead.
Grey, RGBA, palette and 16-bit images are converted, with one warning line per kind.
"""

from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .arrays import ImageSet
from ..errors import ImageFault
from .images import open_image
from .tabular import read_csv

__all__ = [
    "EXTENSIONS", "DR_GRADES", "decode_images", "image_paths", "load_image_folder", "dicom_patients",
    "load_patient_tree", "csv_image_files", "load_csv_images",
]


EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".dcm", ".dicom")
#: the Kaggle diabetic-retinopathy folder names in grade order (alphabetical order would lose it)
DR_GRADES = ["No_DR", "Mild", "Moderate", "Severe", "Proliferate_DR"]
_SHOW = 5
_CLASS_SUFFIX = re.compile(r"_class(\d+)$")  # Kaggle IDC names: <patient>_idx5_x<X>_y<Y>_class<C>
_MODE_NAMES = {"L": "grey", "LA": "grey", "RGBA": "RGBA", "P": "palette"}


def _decode(path: Path, size: int | None) -> tuple[np.ndarray | None, str | None, str | None]:
    """(H, W, 3) uint8 image, or (None, problem); third item: a conversion that happened."""
    from PIL import Image

    try:
        with open_image(path) as im:
            converted = None
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(arr / 257.0, 0, 255).astype(np.uint8))
                converted = "16-bit"
            if im.mode != "RGB":
                converted = converted or _MODE_NAMES.get(im.mode, im.mode)
                im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8), None, converted
    except ImageFault as fault:
        return None, fault.problem, None
    except (OSError, ValueError) as exc:  # a mode Pillow cannot convert
        return None, f"unreadable ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})", None


def decode_images(paths: list[Path], size: int | None, root: Path, skip_bad: bool = False, fit: str = "resize"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Decode every file: (N_ok, size, size, 3) uint8 and the (N_ok,) indices of the files kept.

    ``fit="resize"`` resizes every image to ``size``; ``fit="pad"`` (patches cut from a slide)
    keeps the pixels and pads smaller images (edge crops) with white to the right and bottom, so
    a patch keeps its top-left position; an image larger than ``size`` is then a bad file."""
    images, kept, bad, conversions = [], [], [], {}
    decoded = _decode_all(paths, size if fit == "resize" else None, root)
    for i, (p, (img, problem, converted)) in enumerate(zip(paths, decoded, strict=True)):
        if problem:
            bad.append(f"{_rel(p, root)} ({problem})")
            continue
        if converted:
            conversions[converted] = conversions.get(converted, 0) + 1
        images.append(img)
        kept.append(i)
    if bad and not skip_bad:
        more = f" and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise DataError(root, f"{len(bad)} unreadable image{'s' if len(bad) > 1 else ''}: "
                              f"{'; '.join(bad[:_SHOW])}{more} (--set data.skip_bad=true leaves them out)")
    if bad:
        warnings.warn(f"{root}: skipped {len(bad)} unreadable images", stacklevel=2)
    if fit == "pad" and size is not None:
        images, kept = _pad_patches(images, kept, paths, size, root, skip_bad)
    for kind, n in conversions.items():
        warnings.warn(f"{root}: converted {n} {kind} image{'s' if n > 1 else ''} to 8-bit RGB", stacklevel=2)
    if not images:
        raise DataError(root, "no readable images")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(root, f"images differ in size {sorted(shapes)[:3]}; give a size to resize them to")
    out = np.empty((len(images), *images[0].shape), dtype=np.uint8)
    for i in range(len(images)):  # fill and let go image by image: peak memory stays near one copy
        out[i], images[i] = images[i], None
    return out, np.asarray(kept)


def _pad_patches(images: list[np.ndarray], kept: list[int], paths: list[Path], size: int, root: Path,
                 skip_bad: bool) -> tuple[list[np.ndarray], list[int]]:
    """Pad images smaller than ``size`` x ``size`` with white (right and bottom), counted in a
    warning; an image larger than that is an error (or, with ``skip_bad``, left out)."""
    large = [j for j, im in enumerate(images) if im.shape[0] > size or im.shape[1] > size]
    if large:
        shown = "; ".join(f"{_rel(paths[kept[j]], root)} ({images[j].shape[1]} x {images[j].shape[0]})"
                          for j in large[:_SHOW])
        if not skip_bad:
            raise DataError(root, f"{len(large)} image{'s' if len(large) > 1 else ''} larger than the {size} x {size} "
                                  f"patches (not an edge crop): {shown} (--set data.skip_bad=true leaves them out)")
        warnings.warn(f"{root}: left out {len(large)} images larger than the {size} x {size} patches", stacklevel=3)
        drop = set(large)
        images = [im for j, im in enumerate(images) if j not in drop]
        kept = [k for j, k in enumerate(kept) if j not in drop]
    small = 0
    for j, im in enumerate(images):
        h, w = im.shape[:2]
        if (h, w) != (size, size):
            images[j] = np.pad(im, ((0, size - h), (0, size - w), (0, 0)), constant_values=255)
            small += 1
    if small:
        warnings.warn(f"{root}: padded {small} smaller edge crop{'s' if small > 1 else ''} to {size} x {size} (white, "
                      "right and bottom)", stacklevel=3)
    return images, kept


def _rel(p: Path, root: Path) -> Path:
    return p.relative_to(root) if p.is_relative_to(root) else p


def _decode_all(paths: list[Path], size: int | None, root: Path) -> list:
    """``_decode`` of every path, in order, on a thread pool (Pillow releases the GIL while it
    decodes and resizes), with a progress bar for large sets."""
    from ..progress import track

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda p: _decode(p, size), paths)
        return list(track(results, len(paths), f"decoding {root.name}", disable=len(paths) < 1000))


def image_paths(folder: Path, recursive: bool = False, extensions: tuple[str, ...] = EXTENSIONS) -> list[Path]:
    """The files in ``folder`` (``recursive``: anywhere under it) with an image extension, sorted.
    A name that is not a folder counts even if it cannot be read (a broken link, a link loop):
    decoding then reports it as a bad file instead of leaving it out unseen."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in extensions and not p.is_dir())


def _class_order(names: list[str], classes: list[str] | None, root: Path) -> list[str]:
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(root, f"class folders not in the given classes: {', '.join(unknown)}")
        return list(classes)
    if set(names) == set(DR_GRADES):
        return list(DR_GRADES)
    return sorted(names)


def load_image_folder(root: str | Path, size: int | None = None, classes: list[str] | None = None,
                      skip_bad: bool = False, fit: str = "resize") -> ImageSet:
    """``root/<class>/<image>`` (torchvision ImageFolder layout). Class order: ``classes`` if
    given, the DR grade order for the Kaggle retinopathy folders, else alphabetical."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(root, "no class folders (expected root/<class>/<image files>)")
    order = _class_order([f.name for f in folders], classes, root)
    empty = [f.name for f in folders if not image_paths(f)]
    if empty:
        raise DataError(root, f"class folder{'s' if len(empty) > 1 else ''} with no images: {', '.join(empty)}")
    paths, labels = [], []
    for f in folders:
        files = image_paths(f)
        paths += files
        labels += [order.index(f.name)] * len(files)
    images, kept = decode_images(paths, size, root, skip_bad, fit)
    return ImageSet(images, np.asarray(labels, dtype=np.int64)[kept], order, None, dicom_patients(paths, kept),
                    [str(paths[i]) for i in kept])


def dicom_patients(paths: list[Path], kept: np.ndarray) -> np.ndarray | None:
    """Each kept file's PatientID from its DICOM header ("" when empty or not a DICOM file), when
    any file is DICOM; else None (the layout has no patient ids)."""
    from .dicom import dicom_patient, is_dicom

    chosen = [paths[i] for i in kept]
    if not any(is_dicom(p) for p in chosen):
        return None
    return np.asarray([dicom_patient(p) if is_dicom(p) else "" for p in chosen])


def load_patient_tree(root: str | Path, size: int | None = None, classes: list[str] | None = None,
                      skip_bad: bool = False, fit: str = "resize") -> ImageSet:
    """``root/<patient>/<label>/<image>`` (the original IDC layout, labels 0 and 1). A patient
    folder without images, a label folder that is not a class index, and a file whose
    ``class<C>`` name suffix (the Kaggle IDC naming) contradicts its folder are errors."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "no such folder")
    paths, labels, patients, empty, contradicting = [], [], [], [], []
    for patient in sorted(p for p in root.iterdir() if p.is_dir()):
        found = 0
        for label_dir in sorted(p for p in patient.iterdir() if p.is_dir()):
            if not label_dir.name.isdigit():
                raise DataError(label_dir, "expected a numeric label folder (0, 1, ...) inside each patient folder")
            label = int(label_dir.name)
            if classes is not None and label >= len(classes):
                raise DataError(label_dir, f"label folder {label_dir.name} is not a class: the classes are "
                                           f"{', '.join(f'{i} ({c})' for i, c in enumerate(classes))}")
            files = image_paths(label_dir)
            contradicting += [f for f in files if (m := _CLASS_SUFFIX.search(f.stem)) and int(m.group(1)) != label]
            paths += files
            labels += [label] * len(files)
            patients += [patient.name] * len(files)
            found += len(files)
        if not found:
            empty.append(patient.name)
    if empty:
        raise DataError(root, f"patient folder{'s' if len(empty) > 1 else ''} with no images: "
                              f"{', '.join(empty[:_SHOW])} (expected <patient>/<label>/<image files>)")
    if contradicting:
        shown = ", ".join(str(_rel(f, root)) for f in contradicting[:_SHOW])
        raise DataError(root, f"{len(contradicting)} file{'s' if len(contradicting) > 1 else ''} whose class<C> "
                              f"suffix contradicts the label folder: {shown}")
    if not paths:
        raise DataError(root, "no images (expected root/<patient>/<label>/<image files>)")
    images, kept = decode_images(paths, size, root, skip_bad, fit)
    y = np.asarray(labels, dtype=np.int64)[kept]
    names = classes or [str(i) for i in range(int(y.max()) + 1)]
    return ImageSet(images, y, list(names), None, np.asarray(patients)[kept], [str(paths[i]) for i in kept])


def _warn_conflicting_ids(ids: pd.Series, labels: pd.Series, where: Path) -> None:
    """Warn about ids listed more than once with different labels (which label is right?)."""
    per_id = labels.groupby(ids.to_numpy()).nunique()
    conflicting = per_id.index[per_id > 1].tolist()
    if conflicting:
        shown = ", ".join(f"{i} ({'/'.join(sorted(labels[ids == i].unique()))})" for i in conflicting[:_SHOW])
        warnings.warn(f"{where}: {len(conflicting)} id{'s' if len(conflicting) > 1 else ''} listed with different "
                      f"labels: {shown}; each row is used as given", stacklevel=3)


def _csv_rows(csv_path: Path, image_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The CSV (an id and a label column at least) and the file each row's id names; an id that
    leaves the folder or names no file is an error."""
    df = read_csv(csv_path)
    if df.shape[1] < 2:
        raise DataError(csv_path, "expected at least two columns: image id and label")
    id_col = df.columns[0]
    base = image_dir.resolve()
    paths, escaped, missing = [], [], []
    for line, name in enumerate(df[id_col].astype(str).str.strip(), start=2):
        candidate = (image_dir / name).resolve()
        if not candidate.is_relative_to(base):
            escaped.append(f"line {line} ({name})")
            continue
        found = candidate if candidate.is_file() else next(
            (candidate.with_name(candidate.name + ext) for ext in EXTENSIONS
             if candidate.with_name(candidate.name + ext).is_file()), None)
        if found is None:
            missing.append(f"line {line} ({name})")
        paths.append(found)
    if escaped:
        raise DataError(csv_path, f"ids outside {image_dir}: {', '.join(escaped[:_SHOW])}")
    if missing:
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        raise DataError(csv_path, f"{len(missing)} ids name no file in {image_dir}: {', '.join(missing[:_SHOW])}{more}")
    return df, paths


def csv_image_files(csv_path: str | Path, image_dir: str | Path) -> list[Path]:
    """The image files a CSV of ``image,label[,patient]`` lists, in its row order (every id checked)."""
    return _csv_rows(Path(csv_path), Path(image_dir))[1]


def load_csv_images(csv_path: str | Path, image_dir: str | Path, size: int | None = None,
                    classes: list[str] | None = None, skip_bad: bool = False, fit: str = "resize") -> ImageSet:
    """A CSV of ``image,label[,patient]`` (or APTOS ``id_code,diagnosis``) beside an image folder.
    Ids may omit the extension. An id that leaves the folder (``../``) or names no file is an error."""
    csv_path, image_dir = Path(csv_path), Path(image_dir)
    df, paths = _csv_rows(csv_path, image_dir)
    id_col, label_col = df.columns[0], df.columns[1]
    patient_col = "patient" if "patient" in df.columns else None
    raw = df[label_col].astype(str).str.strip()
    blank = (raw == "").to_numpy()
    if blank.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(blank)[:_SHOW])
        raise DataError(csv_path, f"column '{label_col}': blank label at line{'s' if blank.sum() > 1 else ''} {lines}")
    _warn_conflicting_ids(df[id_col].astype(str).str.strip(), raw, csv_path)
    if classes is None and raw.str.fullmatch(r"\d+").all():
        y = raw.astype(int).to_numpy()
        names = [str(i) for i in range(int(y.max()) + 1)]
    else:
        names = list(classes) if classes is not None else sorted(raw.unique())
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise DataError(csv_path, f"column '{label_col}': labels not in the classes: {', '.join(unknown[:_SHOW])}")
        y = raw.map({c: i for i, c in enumerate(names)}).to_numpy()
    images, kept = decode_images(paths, size, image_dir, skip_bad, fit)
    patients = df[patient_col].astype(str).to_numpy()[kept] if patient_col else dicom_patients(paths, kept)
    return ImageSet(images, np.asarray(y, dtype=np.int64)[kept], names, None, patients,
                    [str(paths[i]) for i in kept])
