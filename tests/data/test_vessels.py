"""Vessel data: the DRIVE and CHASE_DB1 layouts, the embedded CHASE_DB1 set and the derived field
of view, on small generated fundus-like images (the task itself: tests/tasks/test_segmentation.py)."""

import numpy as np
from PIL import Image

from biodl.data.vessels import derive_fov, load_chase, load_drive


def _fundus(size=96, seed=0):
    """A dark frame around a bright disc (the FOV) with a few dark lines (vessels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = np.hypot(yy - size / 2, xx - size / 2) < size * 0.42
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (170, 90, 40)
    mask = np.zeros((size, size), bool)
    for _ in range(4):
        r = rng.integers(10, size - 10)
        mask[r:r + 2, :] = True
        c = rng.integers(10, size - 10)
        mask[:, c:c + 2] = True
    mask &= disc
    img[mask] = (110, 40, 20)
    img = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
    img[~disc] = 0
    return img, mask, disc


def test_fov_derived_from_a_generated_disc():
    img, _, disc = _fundus(200)
    fov = derive_fov(img)
    iou = (fov & disc).sum() / (fov | disc).sum()
    assert iou > 0.98


def test_fov_morphology_matches_scipys_disk_closing_and_opening_to_the_pixel():
    """derive_fov closes and opens by distance transforms; scipy's binary_closing/opening with the
    same disk (border 0) give the same pixels, at the image border too (structure touching it)."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for width in (100, 250, 420):
        red = ndimage.gaussian_filter(rng.random((width * 2 // 3, width)), width / 60)
        img = np.repeat((255 * (red > np.median(red))).astype(np.uint8)[..., None], 3, axis=2)
        r = round(0.01 * width)
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
        ref = ndimage.binary_opening(ndimage.binary_closing(img[..., 0] > 25, disk, border_value=0), disk)
        ref = ndimage.binary_fill_holes(ref)
        labels, n = ndimage.label(ref)
        ref = labels == 1 + int(np.argmax(ndimage.sum(ref, labels, range(1, n + 1))))
        fov = derive_fov(img)
        assert np.array_equal(fov, ref), width
        assert (img[0, :, 0] > 25).any() and (img[:, 0, 0] > 25).any()  # structure touching the border, eroded there


def _save(a, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def test_drive_and_chase_layouts(tmp_path):
    img, mask, disc = _fundus()
    for part, n in (("training", 21), ("test", 1)):
        _save(img, tmp_path / f"drive/{part}/images/{n:02d}_{part}.tif")
        _save((mask * 255).astype(np.uint8), tmp_path / f"drive/{part}/1st_manual/{n:02d}_manual1.gif")
        _save((disc * 255).astype(np.uint8), tmp_path / f"drive/{part}/mask/{n:02d}_{part}_mask.gif")
    cases = load_drive(tmp_path / "drive", "training")
    assert [c.name for c in cases] == ["21_training"] and not cases[0].fov_derived
    assert np.array_equal(cases[0].mask, mask) and np.array_equal(cases[0].fov, disc) and cases[0].second is None
    _save(img, tmp_path / "chase/Image_01L.jpg")
    _save((mask * 255).astype(np.uint8), tmp_path / "chase/Image_01L_1stHO.png")
    _save(mask, tmp_path / "chase/Image_01L_2ndHO.png")  # mode "1"
    (c,) = load_chase(tmp_path / "chase")
    assert c.fov_derived and np.array_equal(c.second, mask) and c.image.shape == (96, 96, 3)


def test_embedded_chase_db1():
    from biodl.datasets import embedded_path

    cases = load_chase(embedded_path("chase_db1"))
    assert len(cases) == 28 and cases[19].name == "Image_10R" and cases[20].name == "Image_11L"
    assert all(c.image.shape == (960, 999, 3) and c.second is not None for c in cases[:2])
    assert 0.05 < cases[0].mask.mean() < 0.1 and 0.6 < cases[0].fov.mean() < 0.85
    assert (cases[0].mask & ~cases[0].fov).sum() < 0.005 * cases[0].mask.sum()  # vessels lie in the derived FOV


def test_a_chase_childs_two_eyes_are_one_patient():
    from biodl.data.vessels import patient_of

    assert patient_of("Image_01L") == patient_of("Image_01R") == "child 01" != patient_of("Image_02L")
    assert patient_of("21_training") == "21_training" and patient_of("Image_01") == "Image_01"
