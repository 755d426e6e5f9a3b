"""model_card.md: written with every report, from the run's own files."""

import json

from biodl.report.run_report import build_report


def test_a_run_writes_its_model_card(run_copy):
    card = (run_copy / "model_card.md").read_text()
    for section in ("## Model details", "## Intended use", "## Out-of-scope use", "## Training and evaluation data",
                    "## Metrics (test split)", "## Calibration", "## Per-class and per-subgroup results",
                    "## Limitations", "## Licence of the data"):
        assert section in card, section
    metrics = json.loads((run_copy / "metrics.json").read_text())
    row = (f"| MCC | {metrics['test/mcc']:.3f} | [{metrics['test/mcc_ci_low']:.3f}, "
           f"{metrics['test/mcc_ci_high']:.3f}] |")
    assert row in card
    manifest = json.loads((run_copy / "manifest.json").read_text())
    assert manifest["inputs"]["data"]["sha256"] in card and manifest["git"]["commit"] in card
    from biodl.io import sha256_file

    assert sha256_file(run_copy / "checkpoints" / "best.safetensors") in card
    # the report links it; a rebuild after the run's files change says what they now say
    assert 'href="model_card.md"' in (run_copy / "report.html").read_text()
    metrics["test/mcc"] = 0.123456
    (run_copy / "metrics.json").write_text(json.dumps(metrics))
    build_report(run_copy)
    assert "| MCC | 0.123 |" in (run_copy / "model_card.md").read_text()


def test_study_notes_reach_the_card(tmp_path):
    """A study's caveats: the manifest's note (heart failure: the leaking follow-up time) and the
    embedded data's MODEL_CARD.md (RetinaMNIST: 28 px images)."""
    from biodl.report.model_card import model_card

    manifest = {"config": {"name": "retinopathy", "task": "image", "data": {"dataset": "retinamnist"}},
                "note": "follow-up time is excluded: it leaks the outcome"}
    card = model_card(tmp_path, manifest, {}, {"classes": ["0", "1", "2", "3", "4"], "size": 28, "in_chans": 3})
    assert "- follow-up time is excluded: it leaks the outcome" in card
    assert "28 x 28 px" in card and "not a screening tool" in card
    assert "CC BY 4.0" in card.split("## Licence of the data", 1)[1]
    assert "No test metrics were recorded" in card and "Weights: none saved" in card  # a config without a model


def test_class_and_feature_names_are_literal_in_the_card(run_copy):
    pre = json.loads((run_copy / "preprocess.json").read_text())
    import re

    pre["features"][0] = "age|<img src=x onerror=alert(1)>"
    pre["classes"] = ["**alive**", "[dead](http://evil)"]
    (run_copy / "preprocess.json").write_text(json.dumps(pre))
    build_report(run_copy)
    card = (run_copy / "model_card.md").read_text()
    assert "age\\|\\<img src=x onerror=alert(1)\\>" in card and not re.search(r"(?<!\\)<img", card)
    assert "\\*\\*alive\\*\\*" in card and "[dead\\](http://evil)" in card
