"""``biodl wsi view``: a Deep Zoom pyramid of the embedded SVS slide with a heat map of tiles whose
probabilities we set; headless Chromium opens it from file:// with no console error and no
request outside its folder, a heat-map tile is drawn in its colour where it lies, the click
readout names it; a mosaic of IDC tiles; bad input refused in one line with nothing written."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from biodl.datasets import embedded_path
from tests.conftest import assert_one_line_error

SVS = embedded_path("cmu1-small-region")  # 2220 x 2967 px at 0.499 um/px
SIDE = 300


def _heat_csv(path: Path) -> Path:
    """A 3 x 3 grid of 300 px tiles from (600, 900), probabilities 0.1 ... 0.9 row by row."""
    lines = ["x,y,probability,attention,set"]
    for k in range(9):
        lines.append(f"{600 + SIDE * (k % 3)},{900 + SIDE * (k // 3)},{0.1 * (k + 1):.1f},{k / 8:.3f},{{IDC}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_viewer_folder_holds_the_pyramid_and_the_heat_map(tmp_path, cli):
    r = cli("wsi", "view", SVS, "--heatmap", _heat_csv(tmp_path / "heat.csv"), "--out", tmp_path / "v")
    assert r.code == 0, r.err
    out = tmp_path / "v"
    levels = sorted(int(p.name) for p in (out / "slide_files").iterdir())
    assert levels == list(range(13))  # Deep Zoom: down to 1 px
    with Image.open(out / "slide_files" / "12" / "0_0.jpeg") as im:
        assert im.size == (255, 255)  # 254 px tiles + 1 px overlap
    heat = np.asarray(Image.open(out / "heatmap.png"))
    assert heat.shape == (3, 3, 4) and (heat[..., 3] == 255).all()
    expected = (np.asarray(colormaps["magma"](0.9))[:3] * 255).round()
    assert np.abs(heat[2, 2, :3] - expected).max() <= 1
    page = (out / "index.html").read_text()
    config = json.loads(re.search(r"const C = (.*);", page).group(1))
    assert config["heat"]["side"] == SIDE and (config["heat"]["x"], config["heat"]["y"]) == (600, 900)
    assert config["mpp"] == pytest.approx(0.499) and config["heat"]["cells"]["2,2"] == [0.9, 1.0, "{IDC}"]
    assert (out / "OPENSEADRAGON_LICENSE.txt").read_text().startswith("Copyright")
    assert "http" not in page.replace("http://schemas.microsoft.com/deepzoom/2008", "")


def test_chromium_opens_it_offline_and_draws_the_tile_in_its_colour(tmp_path, cli):
    pytest.importorskip("playwright", reason="pip install 'biodl[browser]'")
    from playwright.sync_api import sync_playwright

    from biodl.errors import BiodlError
    from biodl.report.browser import FLAGS, chromium_path

    try:
        chromium = chromium_path()
    except BiodlError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "v"
    assert cli("wsi", "view", SVS, "--heatmap", _heat_csv(tmp_path / "heat.csv"), "--out", out).code == 0
    shot = Path(os.environ.get("BIODL_SCREENSHOTS") or tmp_path) / "viewer.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        console, requests = [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.joinpath("index.html").as_uri(), wait_until="load")
        page.wait_for_function("() => viewer.world.getItemCount() == 2 && viewer.world.getItemAt(0).getFullyLoaded()"
                               " && viewer.world.getItemAt(1).getFullyLoaded()", timeout=20000)
        page.evaluate("() => { const o = document.getElementById('opacity'); o.value = 1;"
                      " o.dispatchEvent(new Event('input')); }")
        page.wait_for_timeout(800)
        # the centre of the tile of probability 0.9 (level-0 (1200 + 150, 1500 + 150)) on the page
        at = page.evaluate("() => { const q = viewer.world.getItemAt(0).imageToViewerElementCoordinates("
                           "new OpenSeadragon.Point(1350, 1650)); const r = viewer.element.getBoundingClientRect();"
                           " return [Math.round(q.x + r.left), Math.round(q.y + r.top)]; }")
        page.screenshot(path=str(shot))
        page.mouse.click(*at)
        page.wait_for_timeout(300)
        readout = page.inner_text("#readout")
        page.uncheck("#show")
        page.wait_for_timeout(800)
        off = page.screenshot()
        browser.close()
    assert console == []
    root = out.resolve().as_uri()
    assert requests and all(u.startswith(root + "/") for u in requests), [u for u in requests if root not in u]
    assert any(u.endswith("/heatmap.png") for u in requests) and any(u.endswith(".jpeg") for u in requests)
    expected = (np.asarray(colormaps["magma"](0.9))[:3] * 255).round()
    with Image.open(shot) as im:
        assert np.abs(np.asarray(im.convert("RGB"))[at[1], at[0]] - expected).max() <= 3
    assert "probability 0.900" in readout and "attention 1.000" in readout and "set {IDC}" in readout
    assert re.search(r"x 1\d{3}, y 1\d{3} \(level 0\)", readout)
    import io

    hidden = np.asarray(Image.open(io.BytesIO(off)).convert("RGB"))[at[1], at[0]]
    assert np.abs(hidden - expected).max() > 30  # the layer toggled off shows the slide


def test_a_mosaic_of_tiles_with_a_mil_style_table(tmp_path, cli):
    patient = embedded_path("idc") / "8916"
    files = sorted(patient.glob("*/*.png"))
    xy = [tuple(map(int, re.search(r"_x(\d+)_y(\d+)", f.name).groups())) for f in files]
    table = tmp_path / "tiles.csv"
    table.write_text("slide,bag,x,y,attention,p_tile_IDC\n" + "".join(
        f"8916,8916/{i % 3},{x},{y},{0.5 if i % 2 else 0.25},{(i % 10) / 10}\n" for i, (x, y) in enumerate(xy)))
    assert_one_line_error(cli("wsi", "view", patient, "--out", tmp_path / "m"), "8916", "--mpp")
    r = cli("wsi", "view", patient, "--heatmap", table, "--mpp", "4", "--out", tmp_path / "m")
    assert r.code == 0, r.err
    config = json.loads(re.search(r"const C = (.*);", (tmp_path / "m" / "index.html").read_text()).group(1))
    x0, y0 = min(x for x, _ in xy), min(y for _, y in xy)
    assert config["origin"] == [x0, y0] and config["heat"]["side"] == 50 and config["mpp"] == 4
    assert len(config["heat"]["cells"]) == len(files)
    assert max(c[1] for c in config["heat"]["cells"].values()) == 1.0  # attention relative to its bag's maximum


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, cli):
    heat = tmp_path / "heat.csv"
    heat.write_text("x,y,probability\n600,900,0.5\n2400,900,0.5\n")
    assert_one_line_error(cli("wsi", "view", SVS, "--heatmap", heat, "--out", tmp_path / "a"),
                          "heat.csv", "x 2400, y 900 falls outside the slide")
    heat.write_text("x,y,probability\n600,900,1.5\n900,900,0.5\n")
    assert_one_line_error(cli("wsi", "view", SVS, "--heatmap", heat, "--out", tmp_path / "a"), "[0, 1]")
    heat.write_text("x,y\n600,900\n")
    assert_one_line_error(cli("wsi", "view", SVS, "--heatmap", heat, "--out", tmp_path / "a"), "probability")
    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 48), "white").save(plain)
    assert_one_line_error(cli("wsi", "view", plain, "--out", tmp_path / "a"), "plain.png", "--mpp")
    assert not (tmp_path / "a").exists()
    assert cli("wsi", "view", plain, "--mpp", "1", "--out", tmp_path / "b").code == 0
    before = (tmp_path / "b" / "index.html").read_text()
    assert_one_line_error(cli("wsi", "view", plain, "--mpp", "2", "--out", tmp_path / "b"), "exists")
    assert (tmp_path / "b" / "index.html").read_text() == before
    shutil.rmtree(tmp_path / "b")
