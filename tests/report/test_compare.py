"""`biodl compare` and the HTML helpers."""

import json
import re

import pandas as pd

from biodl.report import html as h
from tests.conftest import assert_one_line_error


def test_html_helpers_escape_every_string():
    df = pd.DataFrame({"<b>col": ["<script>x</script>", "a&b"], "n": [1.23456, float("nan")]})
    out = h.table(df)
    assert "<script>" not in out and "&lt;script&gt;x&lt;/script&gt;" in out and "a&amp;b" in out
    assert "&lt;b&gt;col" in out and '<td class="num">1.235</td>' in out and '<td class="num"></td>' in out
    kv = h.key_values([("<k>", '"v"'), ("skipped", None)])
    assert "&lt;k&gt;" in kv and "&quot;v&quot;" in kv and "skipped" not in kv
    page = h.page("<t>", "<s>", [h.Section('"a', "<h>", "<p>ok</p>")])
    assert "<title>&lt;t&gt;</title>" in page and 'href="#&quot;a"' in page and "<p>ok</p>" in page


def _second_run(run_copy, **changes):
    m = json.loads((run_copy / "metrics.json").read_text())
    m.update(changes)
    (run_copy / "metrics.json").write_text(json.dumps(m))
    return run_copy, m


def test_compare_writes_markdown_and_html_side_by_side(trained_run, run_copy, tmp_path, cli):
    other, changed = _second_run(run_copy, **{"test/mcc": 0.9, "test/mcc_ci_low": 0.8, "test/mcc_ci_high": 0.95,
                                              "test/loss": 0.01})
    base = json.loads((trained_run / "metrics.json").read_text())
    r = cli("compare", trained_run, other, "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    md = (tmp_path / "cmp.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines()
            if line.startswith("| ")}
    assert rows[""] == [trained_run.name, "run"] or rows[""] == [str(trained_run), str(other)]
    assert rows["test/mcc"] == [f"{base['test/mcc']:.3f} [{base['test/mcc_ci_low']:.3f}, "
                                f"{base['test/mcc_ci_high']:.3f}]", "0.900 [0.800, 0.950]"]
    assert rows["name"] == ["heart-failure-mlp"] * 2 and rows["task"] == ["tabular"] * 2
    assert not any(k.startswith("val/") for k in rows)  # default: test metrics only
    html = (tmp_path / "cmp.html").read_text()
    # the best value in bold: the higher MCC, the lower loss
    mcc_row = re.search(r"<td>test/mcc</td>(.*?)</tr>", html).group(1)
    assert '<td class="best">0.900 [0.800, 0.950]</td>' in mcc_row
    loss_row = re.search(r"<td>test/loss</td>(.*?)</tr>", html).group(1)
    assert loss_row.count('class="best"') == 1 and '<td class="best">0.01</td>' in loss_row
    # again: refuses to overwrite, then --overwrite with a metric filter
    assert_one_line_error(cli("compare", trained_run, other, "--out", tmp_path / "cmp"), "cmp.md", "--overwrite")
    r = cli("compare", trained_run, other, "--out", tmp_path / "cmp", "--overwrite", "--metrics", "val/*,test/mcc")
    assert r.code == 0, r.err
    keys = [line.split("|")[1].strip() for line in (tmp_path / "cmp.md").read_text().splitlines()
            if line.startswith("| ")]
    assert "test/mcc" in keys and "val/roc_auc" in keys and "test/f1" not in keys


def test_compare_bad_inputs_are_one_line_errors(trained_run, run_copy, tmp_path, cli):
    assert_one_line_error(cli("compare", trained_run, "--out", tmp_path / "c"), "two or more")
    assert_one_line_error(cli("compare", trained_run, tmp_path / "nope", "--out", tmp_path / "c"),
                          "no such run directory")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    assert_one_line_error(cli("compare", trained_run, tmp_path / "half", "--out", tmp_path / "c"), "no metrics.json")
    assert_one_line_error(cli("compare", trained_run, run_copy, "--out", tmp_path / "c", "--metrics", "nothing/*"),
                          "--metrics", "nothing/*")
    (run_copy / "metrics.json").write_text('{"test/mcc": "high"}')
    assert_one_line_error(cli("compare", trained_run, run_copy, "--out", tmp_path / "c"), "metrics.json",
                          "not a number")
    assert not (tmp_path / "c.md").exists() and not (tmp_path / "c.html").exists()


def test_no_value_is_marked_best_across_runs_of_different_tasks(trained_run, run_copy, tmp_path, cli):
    import yaml

    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["config"]["task"] = "image"  # the same metric names, another task
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    metrics = json.loads((run_copy / "metrics.json").read_text())
    metrics["test/mcc"] = 0.99
    (run_copy / "metrics.json").write_text(json.dumps(metrics))
    assert config["task"] == "tabular"
    r = cli("compare", trained_run, run_copy, "--out", tmp_path / "c")
    assert r.code == 0, r.err
    page = (tmp_path / "c.html").read_text()
    assert 'class="best"' not in page and "different tasks" in page
    manifest["config"]["task"] = "tabular"
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    assert cli("compare", trained_run, run_copy, "--out", tmp_path / "c", "--overwrite").code == 0
    assert 'class="best"' in (tmp_path / "c.html").read_text()
