"""Patient mosaics from the embedded IDC tree: tiles listed with labels and level-0 positions
from their names, and each patch put back at its position."""

import numpy as np
import pytest
from PIL import Image

from biodl.data.mosaics import assemble, patient_tiles
from biodl.datasets import embedded_path
from biodl.errors import DataError


def test_patients_tiles_labels_and_positions():
    patients = patient_tiles(embedded_path("idc"))
    assert [p.name for p in patients][:3] == ["8916", "8950", "8951"] and len(patients) == 10
    first = patients[0]
    assert len(first.files) == 171 and int(first.labels.sum()) == 111
    names = [f.name for f in first.files]
    assert names == sorted(names)
    i = names.index("8916_idx5_x1001_y851_class0.png")
    assert first.xy[i].tolist() == [1001, 851] and first.labels[i] == 0
    assert all(f.parent.name == str(lab) for f, lab in zip(first.files, first.labels, strict=True))


def test_the_mosaic_puts_each_patch_at_its_position():
    p = patient_tiles(embedded_path("idc"))[0]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB").resize((50, 50))) for f in p.files])
    canvas = assemble(pixels, p.xy)
    origin = p.xy.min(axis=0)
    for i in (0, 50, 170):
        x, y = p.xy[i] - origin
        assert np.array_equal(canvas[y:y + 50, x:x + 50], pixels[i])


def test_bad_trees_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        patient_tiles(tmp_path / "none")
    (tmp_path / "p1" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="numeric label folder"):
        patient_tiles(tmp_path)
    (tmp_path / "p1" / "x").rmdir()
    (tmp_path / "p1" / "0").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "p1" / "0" / "a_x0_y0_class0.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "p1" / "0" / "b_x0_y0_class0.png")
    with pytest.raises(DataError, match="two tiles at one position"):
        patient_tiles(tmp_path)
