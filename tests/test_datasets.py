"""Every embedded data set is where the registry says, with its SOURCE.md (licence and citation),
and its files match the checksums they were copied with."""

import hashlib

import pytest

from biodl.datasets import EMBEDDED, embedded_path


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_an_embedded_set_has_its_source_and_intact_files(name):
    path = embedded_path(name)
    assert path.exists(), path
    folder = path if path.is_dir() else path.parent
    while not (folder / "SOURCE.md").is_file() and folder.parent != folder and folder.name != "datasets":
        folder = folder.parent
    source = (folder / "SOURCE.md").read_text()
    assert "licen" in source.lower() or "cc0" in source.lower(), name
    manifest = folder / "MANIFEST.sha256"
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            digest, file = line.split(maxsplit=1)
            at = folder / file.strip() if (folder / file.strip()).is_file() else path / file.strip()  # or inside
            assert hashlib.sha256(at.read_bytes()).hexdigest() == digest, (name, file)


def test_the_cellbench_plates_load_with_their_lines():
    from biodl.data.cells import load_cells

    root = embedded_path("cellbench")
    cells = load_cells(sorted(root.glob("*.count.csv.gz")), sorted(root.glob("*.metadata.csv.gz")))
    assert cells.x.shape[0] == 909 and cells.obs["demuxlet_cls"].value_counts().to_dict() == {"SNG": 571, "DBL": 338}
    singlets = cells.obs[cells.obs["demuxlet_cls"] == "SNG"]["cell_line_demuxlet"].value_counts().to_dict()
    assert singlets == {"A549": 186, "H838": 146, "H1975": 89, "H2228": 85, "HCC827": 65}  # SOURCE.md's table
