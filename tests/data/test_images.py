"""Opening image files safely: OS faults, decompression bombs and the decode size, for every
reader (decoder, size probe, train, predict)."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from biodl.data.folders import load_image_folder
from biodl.data.images import image_size, open_image
from biodl.errors import ImageFault
from biodl.data.layouts import default_size
from biodl.errors import DataError
from tests.conftest import assert_one_line_error, train_square_run


def bomb_png(path, width=20_000, height=20_000):
    """A PNG of a few dozen bytes that declares ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def _png(path, size=16, value=80):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _loop(folder, name="loop.png"):
    a, b = folder / name, folder / f"other_{name}"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


# ----------------------------------------------------------------------------- the opener


def test_every_fault_of_a_file_is_an_image_fault(tmp_path):
    cases = {
        "loop": (_loop(tmp_path), "a symbolic-link loop"),
        "dangling": (tmp_path / "dangling.png", "unreadable (a dangling symbolic link)"),
        "folder": (tmp_path / "folder.png", "is a folder"),
        "empty": (tmp_path / "empty.png", "empty file"),
        "text": (tmp_path / "text.png", "not an image"),
        "bomb": (bomb_png(tmp_path / "bomb.png"), "declares more than 89,478,485 pixels (a decompression bomb?)"),
        "half bomb": (bomb_png(tmp_path / "half.png", 10_000, 10_000),
                      "declares 10000 x 10000 pixels, over the limit of 89,478,485"),
    }
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name, (path, fragment) in cases.items():
        for read in (image_size, lambda p: open_image(p).__enter__()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's own warning for the half bomb
                with pytest.raises(ImageFault) as err:
                    read(path)
            assert fragment in err.value.problem, name


def test_the_opener_lets_faults_of_the_caller_through(tmp_path):
    with pytest.raises(KeyError):
        with open_image(_png(tmp_path / "ok.png")):
            raise KeyError("the caller's own bug")


# ----------------------------------------------------------------------------- image folders


def test_link_loops_and_bombs_are_listed_as_bad_files_or_skipped(tmp_path):
    for i in range(4):
        _png(tmp_path / ("a" if i % 2 else "b") / f"{i}.png")
    _loop(tmp_path / "a")
    bomb_png(tmp_path / "b" / "bomb.png")
    (tmp_path / "b" / "sub.png").mkdir()  # a folder with an image name is not a file to decode
    with pytest.raises(DataError) as err:
        load_image_folder(tmp_path, size=16)
    msg = str(err.value)
    assert "3 unreadable images" in msg and "a/loop.png (unreadable (a symbolic-link loop))" in msg
    assert "b/bomb.png (declares more than" in msg and "sub.png" not in msg
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = load_image_folder(tmp_path, size=16, skip_bad=True)
    assert len(s) == 4 and any("skipped 3 unreadable images" in str(x.message) for x in w)


def test_train_and_predict_report_a_link_loop_and_a_bomb_in_one_line(tmp_path, cli):
    data = tmp_path / "data"
    for i in range(24):
        _png(data / ("a" if i % 2 else "b") / f"{i:02d}.png", value=40 + 150 * (i % 2))
    _loop(data / "a")
    bomb_png(data / "b" / "00_bomb.png")  # sorts first: the size probe meets it before any good file
    args = ["train", "--data", data, "--epochs", "1", "--set", "trainer.progress=false", "--set", "n_boot=100",
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.args={width: 8, blocks: 1}"]
    r = cli(*args, "--out", tmp_path / "run")
    assert_one_line_error(r, "3 unreadable images", "a/loop.png (unreadable (a symbolic-link loop))",
                          "b/00_bomb.png (declares more than", "--set data.skip_bad=true")
    assert not (tmp_path / "run").exists()
    r = cli(*args, "--out", tmp_path / "run", "--set", "data.skip_bad=true")
    assert r.code == 0, r.err
    assert "skipped 3 unreadable images" in r.err and "Traceback" not in r.err
    r = cli("predict", tmp_path / "run", data / "b")
    assert_one_line_error(r, "1 unreadable image", "00_bomb.png (declares more than")
    assert not (tmp_path / "run" / "predictions").exists()


def test_half_bomb_is_one_line_in_the_cli_without_pillows_warning(tmp_path, cli):
    run = train_square_run(tmp_path, ("plain", "square"), epochs=1)
    bomb_png(tmp_path / "big.png", 10_000, 10_000)
    r = cli("predict", run, tmp_path / "big.png")
    assert_one_line_error(r, "big.png (declares")
    r = cli("explain", run, tmp_path / "big.png", "--method", "saliency", "--no-sanity")
    assert_one_line_error(r, "big.png", "declares")
    assert not (run / "explain").exists()


# ----------------------------------------------------------------------------- the decode size


def test_decode_size_is_the_median_of_the_set_with_a_warning_when_sizes_vary(tmp_path):
    files = [_png(tmp_path / "0000_tiny.png", size=8)] + [_png(tmp_path / f"{i:04d}.png", size=48)
                                                         for i in range(1, 30)]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert default_size(sorted(files), tmp_path) == 48  # not 8, the size of the first file
    assert any("vary widely (shorter side 8 to 48 px" in str(x.message) for x in w)
    same = sorted(files)[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_size(same, tmp_path) == 48
        assert default_size([_png(tmp_path / "big.png", size=300)], tmp_path) == 224  # capped
        assert default_size([bomb_png(tmp_path / "b.png")], tmp_path) == 224  # nothing readable: the cap


def test_a_data_path_that_is_a_link_loop_or_dangling_link_says_so(tmp_path, cli):
    from tests.conftest import ROOT

    loop = _loop(tmp_path, "data")
    r = cli("train", "--data", loop, "--out", tmp_path / "run")
    assert_one_line_error(r, str(loop), "a symbolic-link loop")
    dangling = tmp_path / "table.csv"
    dangling.symlink_to(tmp_path / "moved.csv")
    r = cli("train", "--config", ROOT / "examples/heart_failure_mlp.yaml", "--set", "data.dataset=null",
            "--set", f"data.path={dangling}", "--out", tmp_path / "run")
    assert_one_line_error(r, "table.csv", "a dangling symbolic link")
    assert not (tmp_path / "run").exists()
