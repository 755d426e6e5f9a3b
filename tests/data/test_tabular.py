import warnings

import numpy as np
import pandas as pd
import pytest

from biodl.data import TabularPreprocessor, load_table, read_csv, stratified_split
from biodl.errors import DataError
from tests.conftest import HEART, edit_cell, heart_rows, write_csv

BINARY = ["anaemia", "diabetes", "high_blood_pressure", "sex", "smoking"]


def test_embedded_heart_failure_loads_with_the_published_counts():
    x, y, features = load_table(HEART, "DEATH_EVENT", None, ["time"], BINARY)
    assert x.shape == (299, 11) and y.shape == (299,)
    assert "time" not in features and "DEATH_EVENT" not in features
    assert int(y.sum()) == 96  # deaths, as in SOURCE.md
    assert x[:, features.index("anaemia")].sum() == 129


def _edit(tmp_path, line_no: int, column: str, value: str):
    return edit_cell(tmp_path / "edited.csv", line_no, column, value)


def test_text_in_numeric_column_names_column_and_line(tmp_path):
    path = _edit(tmp_path, 5, "serum_sodium", "high")
    with pytest.raises(DataError) as err:
        load_table(path, "DEATH_EVENT", None, ["time"], BINARY)
    msg = str(err.value)
    assert str(path) in msg and "column 'serum_sodium'" in msg and "line 5" in msg and "'high'" in msg


def test_blank_value_is_reported(tmp_path):
    path = _edit(tmp_path, 10, "age", "")
    with pytest.raises(DataError, match=r"column 'age': blank value at line 10"):
        load_table(path, "DEATH_EVENT", None, ["time"], BINARY)


def test_binary_column_outside_0_1(tmp_path):
    path = _edit(tmp_path, 3, "smoking", "2")
    with pytest.raises(DataError, match=r"column 'smoking': must be 0 or 1, found 2 at line 3"):
        load_table(path, "DEATH_EVENT", None, ["time"], BINARY)


def test_target_outside_0_1(tmp_path):
    path = _edit(tmp_path, 7, "DEATH_EVENT", "3")
    with pytest.raises(DataError, match=r"column 'DEATH_EVENT': must be 0 or 1"):
        load_table(path, "DEATH_EVENT", None, ["time"], BINARY)


def test_missing_column_is_named(tmp_path):
    df = pd.read_csv(HEART).drop(columns=["ejection_fraction"])
    path = tmp_path / "missing.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column: ejection_fraction"):
        load_table(path, "DEATH_EVENT", ["age", "ejection_fraction"], [], [])


def test_many_offending_rows_are_summarised(tmp_path):
    lines = heart_rows()
    for i in range(1, 9):
        cells = lines[i].split(",")
        cells[0] = "n/a"
        lines[i] = ",".join(cells)
    path = write_csv(tmp_path / "many.csv", lines)
    with pytest.raises(DataError, match=r"lines 2, 3, 4, 5, 6 and 3 more"):
        load_table(path, "DEATH_EVENT", None, ["time"], BINARY)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty file"),
        (b"a,b,DEATH_EVENT\n", "no data rows"),
        (b"a,b,DEATH_EVENT\n1,2,0\n1,2,3,4,5\n", "malformed CSV"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\xfd", "not a UTF-8"),
        (b"a,a,DEATH_EVENT\n1,2,0\n", "duplicated column names: a"),
    ],
)
def test_malformed_files(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_csv(path)
    assert fragment in str(err.value) and str(path) in str(err.value)


def test_a_gzipped_csv_is_read_and_a_broken_one_is_one_error(tmp_path):
    import gzip

    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,a2,DEATH_EVENT\n1,2,0\n3,4,1\n"))
    assert read_csv(tmp_path / "t.csv.gz")["a2"].tolist() == ["2", "4"]
    (tmp_path / "dup.csv.gz").write_bytes(gzip.compress(b"a,a,DEATH_EVENT\n1,2,0\n"))
    with pytest.raises(DataError, match="duplicated column names: a"):
        read_csv(tmp_path / "dup.csv.gz")
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"a,b,DEATH_EVENT\n1,2,0\n" * 50)[:40])
    with pytest.raises(DataError) as err:
        read_csv(tmp_path / "cut.csv.gz")
    assert "cut.csv.gz" in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_csv(tmp_path / "absent.csv")


def test_preprocessor_standardises_numeric_and_keeps_binary():
    x, _, features = load_table(HEART, "DEATH_EVENT", None, ["time"], BINARY)
    pre = TabularPreprocessor.fit(x[:200], features, BINARY, "DEATH_EVENT", standardize=True)
    z = pre.transform(x[:200])
    assert z.dtype == np.float32
    num = [i for i, f in enumerate(features) if f not in BINARY]
    b = [i for i, f in enumerate(features) if f in BINARY]
    np.testing.assert_allclose(z[:, num].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, num].std(0), 1, atol=1e-4)
    np.testing.assert_array_equal(z[:, b], x[:200, b])
    again = TabularPreprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(again.transform(x[200:]), pre.transform(x[200:]))


def test_stratified_split_is_disjoint_complete_and_stratified():
    _, y, _ = load_table(HEART, "DEATH_EVENT", None, ["time"], BINARY)
    s = stratified_split(y, 0.2, 0.2, seed=3)
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(allidx.tolist()) == list(range(len(y)))
    assert len(s["test"]) == 60 and len(s["val"]) == 60
    for part in s.values():
        assert abs(y[part].mean() - y.mean()) < 0.03
    assert not np.array_equal(stratified_split(y, 0.2, 0.2, seed=4)["test"], s["test"])
    np.testing.assert_array_equal(stratified_split(y, 0.2, 0.2, seed=3)["test"], s["test"])


def test_split_refuses_a_single_class():
    with pytest.raises(DataError, match="only one class"):
        stratified_split(np.zeros(50, dtype=int), 0.2, 0.2, seed=0)


def test_split_names_a_rare_class_in_words():
    y = np.array([0] * 20 + [1])
    with pytest.raises(DataError, match=r"class 'IDC' has 1 row; a stratified split needs at least 3$"):
        stratified_split(y, 0.2, 0.2, seed=0, names=["no IDC", "IDC"])
    with pytest.raises(DataError, match=r"class 1 has 1 row;"):  # no names: the index, not np.int64(1)
        stratified_split(y, 0.2, 0.2, seed=0)


def test_a_saved_pandas_index_is_dropped_with_a_warning(tmp_path):
    sorted_by_time = pd.read_csv(HEART).sort_values("time")  # the index now follows follow-up time: a leak
    path = tmp_path / "with_index.csv"
    sorted_by_time.to_csv(path)  # index=True, pandas' default: a first column with no name
    with pytest.warns(UserWarning, match=r"column 1 \(no name\) holds distinct row numbers \(0\.\.298\).*dropped"):
        x, y, features = load_table(path, "DEATH_EVENT", None, ["time"], BINARY)
    assert x.shape == (299, 11) and features[0] == "age" and "Unnamed: 0" not in features
    twice = tmp_path / "twice.csv"  # read back and saved again: the old index is now named 'Unnamed: 0'
    pd.read_csv(path).to_csv(twice, index=False)
    with pytest.warns(UserWarning, match=r"column 1 \('Unnamed: 0'\)"):
        assert read_csv(twice).columns[0] == "age"


def test_a_nameless_column_that_is_no_index_is_refused_and_an_empty_one_dropped(tmp_path):
    lines = heart_rows()
    path = write_csv(tmp_path / "nameless.csv", [",".join(["", lines[0]])] +
                     [f"{'ab'[i % 2]},{line}" for i, line in enumerate(lines[1:])])
    with pytest.raises(DataError, match=r"column 1 \(no name\) has no real name; name it or remove it"):
        read_csv(path)
    trailing = write_csv(tmp_path / "trailing.csv", [line + "," for line in lines])  # an Excel-style trailing comma
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(read_csv(trailing).columns) == lines[0].split(",")


@pytest.mark.parametrize("key, value, fragment", [
    ("drop", ["Time"], "missing column: Time (did you mean 'time'?), named in data.drop"),
    ("features", ["age", "ejection_fractoin"], "missing column: ejection_fractoin (did you mean "
                                               "'ejection_fraction'?), named in data.features"),
    ("binary", ["smoker"], "missing column: smoker (did you mean 'smoking'?), named in data.binary"),
])
def test_unknown_column_names_in_the_config_name_the_closest(key, value, fragment):
    args = {"features": None, "drop": [], "binary": []}
    args[key] = value
    with pytest.raises(DataError) as err:
        load_table(HEART, "DEATH_EVENT", **args)
    assert fragment in str(err.value)
    with pytest.raises(DataError, match=r"missing column: death_event \(the target, data.target\) \(did you mean "
                                        r"'DEATH_EVENT'\?\)"):
        load_table(HEART, "death_event", None, [], [])
