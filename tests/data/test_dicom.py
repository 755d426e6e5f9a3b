"""DICOM input: windowing, MONOCHROME1, colour, patient ids from the header, and clear faults.
The tests write their own DICOM files with pydicom."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from biodl.data.dicom import dicom_patient, read_dicom  # noqa: E402
from biodl.data.images import image_size  # noqa: E402
from biodl.errors import ImageFault  # noqa: E402
from tests.conftest import main_ok  # noqa: E402


def write_dicom(path, pixels, photometric="MONOCHROME2", patient="P1", slope=None, intercept=None, window=None,
                frames=1, syntax=None, pixel_data=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient
    ds.Modality = "OT"
    rgb = pixels.ndim == 3 and pixels.shape[-1] == 3
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixel_data and meta.TransferSyntaxUID.is_compressed:  # a compressed frame (not a real JPEG: no decoder needed
        from pydicom.encaps import encapsulate                  # to find that none is installed)

        ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
    elif pixel_data:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_greyscale_window_and_monochrome1(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, (20, 30)).astype(np.uint16)
    write_dicom(tmp_path / "ct.dcm", stored, slope=2, intercept=-1000, window=(40, 400))
    hu = stored * 2.0 - 1000  # the modality LUT
    expected = np.round(np.clip((hu - 39.5) / 399 + 0.5, 0, 1) * 255)  # DICOM's linear window
    got = np.asarray(read_dicom(tmp_path / "ct.dcm"))
    assert got.dtype == np.uint8 and got.shape == (20, 30)
    np.testing.assert_array_equal(got, expected)
    write_dicom(tmp_path / "x.dcm", stored, photometric="MONOCHROME1", slope=2, intercept=-1000, window=(40, 400))
    np.testing.assert_array_equal(np.asarray(read_dicom(tmp_path / "x.dcm")), np.round((1 - np.clip(
        (hu - 39.5) / 399 + 0.5, 0, 1)) * 255))  # white is low: inverted
    write_dicom(tmp_path / "raw.dcm", stored)  # no window: the image's own range
    raw = np.asarray(read_dicom(tmp_path / "raw.dcm"))
    assert raw.min() == 0 and raw.max() == 255
    np.testing.assert_array_equal(raw, np.round((stored - stored.min()) / (stored.max() - stored.min()) * 255))
    assert image_size(tmp_path / "ct.dcm") == (30, 20) and dicom_patient(tmp_path / "ct.dcm") == "P1"


def test_colour_is_kept(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    write_dicom(tmp_path / "rgb.dcm", pixels, photometric="RGB")
    im = read_dicom(tmp_path / "rgb.dcm")
    assert im.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(im), pixels)


def test_dicom_faults_say_what_to_do(tmp_path):
    from pydicom.uid import JPEGBaseline8Bit

    px = np.zeros((8, 8), np.uint8)
    write_dicom(tmp_path / "multi.dcm", np.zeros((3, 8, 8), np.uint8), frames=3)
    write_dicom(tmp_path / "nopixels.dcm", px, pixel_data=False)
    write_dicom(tmp_path / "jpeg.dcm", px, syntax=JPEGBaseline8Bit)  # declared compressed: no decoder for it
    (tmp_path / "text.dcm").write_text("not a dicom file at all")
    for name, fault in (("multi.dcm", "multi-frame DICOM (3 frames)"), ("nopixels.dcm", "without pixel data"),
                        ("jpeg.dcm", "pip install pylibjpeg"), ("text.dcm", "not a readable DICOM file")):
        with pytest.raises(ImageFault, match=fault.replace("(", r"\(").replace(")", r"\)")):
            read_dicom(tmp_path / name)


def _dicom_folder(root, patients):
    """Two classes of 8 x 8 DICOMs, two images per patient; class b images are bright."""
    rng = np.random.default_rng(2)
    for k, patient in enumerate(patients):
        label = "ab"[k % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        for j in range(2):
            base = 3000 if label == "b" else 500
            write_dicom(root / label / f"{k}_{j}.dcm", (base + rng.integers(0, 400, (16, 16))).astype(np.uint16),
                        patient=patient)
    return root


def test_folders_of_dicom_files_train_grouped_by_patient(tmp_path, cli):
    from tests.tasks.test_image import FAST

    import pandas as pd

    _dicom_folder(tmp_path / "data", [f"P{k:02d}" for k in range(16)])
    main_ok("train", "--data", tmp_path / "data", "--out", tmp_path / "run", *FAST, "--set",
            f"data.cache_dir={tmp_path / 'c'}")
    test = pd.read_csv(tmp_path / "run" / "test_predictions.csv")
    val = pd.read_csv(tmp_path / "run" / "val_predictions.csv")
    assert test["patient"].str.startswith("P").all() and not set(test["patient"]) & set(val["patient"])
    assert (test.groupby("patient").size() == 2).all()  # a patient's two images stay together
    # one image without a PatientID: grouping by patient cannot place it
    _dicom_folder(tmp_path / "anon", [f"P{k:02d}" for k in range(15)] + [""])
    r = cli("train", "--data", tmp_path / "anon", "--out", tmp_path / "run2", *FAST, "--set",
            f"data.cache_dir={tmp_path / 'c'}")
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert r.code == 2 and len(errors) == 1 and "Traceback" not in r.err  # (and the usual grey -> RGB warning)
    assert "2 images have no patient id" in errors[0] and "data.group_by_patient=false" in errors[0]
    assert not (tmp_path / "run2").exists()
    # predict reads DICOM files too
    main_ok("predict", tmp_path / "run", tmp_path / "data" / "b", "--out", tmp_path / "p.csv")
    assert len(pd.read_csv(tmp_path / "p.csv")) == 16



@pytest.mark.parametrize("slope, intercept, window, fault", [
    ("NaN", 0, None, "RescaleSlope is nan"),
    (0, 0, None, "RescaleSlope is 0"),
    (1e308, 1e308, None, "overflow the pixel values"),
    ("9.9e9", 0, None, r"RescaleSlope is not a number \('abc!x'"),  # text: the bytes are replaced below
    (1, 0, ("NaN", 400), "WindowCenter is nan"),
    (1, 0, (40, "inf"), "WindowWidth is inf"),
    (1, 0, (100000, 10), "lies above every pixel value"),
    (1, 0, (-100000, 10), "lies below every pixel value"),
    (1, 0, (40, -5), "WindowWidth is -5"),
])
def test_a_rescale_or_window_that_would_give_a_flat_or_nan_image_is_refused(tmp_path, monkeypatch, slope, intercept,
                                                                           window, fault):
    """Silently black images, in predict and in training sets, were the fault: each is named."""
    import warnings

    from pydicom.config import settings

    stored = np.random.default_rng(1).integers(0, 4096, (12, 10)).astype(np.uint16)
    monkeypatch.setattr(settings, "writing_validation_mode", 0)  # we write invalid DS values on purpose
    monkeypatch.setattr(settings, "reading_validation_mode", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = write_dicom(tmp_path / "x.dcm", stored, slope=slope, intercept=intercept, window=window)
    path.write_bytes(path.read_bytes().replace(b"9.9e9 ", b"abc!x "))
    with pytest.raises(ImageFault, match=fault):
        read_dicom(tmp_path / "x.dcm")


def test_a_window_given_twice_as_ct_files_do_takes_the_first(tmp_path):
    stored = np.arange(200, dtype=np.uint16).reshape(10, 20) * 20
    write_dicom(tmp_path / "ct.dcm", stored, slope=1, intercept=0, window=([2000, 500], [4000, 1000]))
    write_dicom(tmp_path / "one.dcm", stored, slope=1, intercept=0, window=(2000, 4000))
    first = np.asarray(read_dicom(tmp_path / "ct.dcm"))
    assert np.array_equal(first, np.asarray(read_dicom(tmp_path / "one.dcm"))) and first.std() > 10


def test_a_blank_image_stays_blank_not_a_fault(tmp_path):
    write_dicom(tmp_path / "blank.dcm", np.zeros((8, 8), np.uint16), slope=1, intercept=0, window=(40, 400))
    assert np.asarray(read_dicom(tmp_path / "blank.dcm")).shape == (8, 8)


def test_pixel_bombs_are_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    from PIL import Image
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    # a deflated file: zeros inflate ~1000-fold; pydicom would inflate it whole
    write_dicom(tmp_path / "deflated.dcm", np.zeros((400, 400), np.uint16), syntax=DeflatedExplicitVRLittleEndian)
    assert (tmp_path / "deflated.dcm").stat().st_size < 4000
    assert np.asarray(read_dicom(tmp_path / "deflated.dcm")).shape == (400, 400)  # under the limit: read
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # cap 160 kB inflated; the file inflates to 320 kB
    with pytest.raises(ImageFault, match="inflating to more than 160,000 bytes"):
        read_dicom(tmp_path / "deflated.dcm")
    write_dicom(tmp_path / "big.dcm", np.zeros((150, 150), np.uint8))
    with pytest.raises(ImageFault, match="declares 150 x 150 pixels, over the limit of 20,000"):
        read_dicom(tmp_path / "big.dcm")
