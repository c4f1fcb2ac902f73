"""The report's figure: what it draws from, its checks of the paper's
numbers, and its bytes (the same report, the same file)."""

import json
import os

import numpy as np
import pytest
from matplotlib import image

from bam_tf.analysis.figure import FigureError
from bam_tf.analysis.figure import check_paper_scores
from bam_tf.analysis.figure import draw_scores
from bam_tf.analysis.figure import paper_average


def _report():
    def model(scores):
        return {"scores": scores, "median": {
            k: float(np.median(v)) for k, v in scores.items()},
            "n_trials": len(scores["avg"])}
    return {"split": "dev", "tasks": ["rte", "sts"], "comparisons": [],
            "models": {
                "single": model({"rte": [55.0, 57.0, 56.0],
                                 "sts": [84.0, 85.0, 86.0],
                                 "avg": [69.5, 71.0, 71.0]}),
                "multi": model({"rte": [60.0], "sts": [80.0],
                                "avg": [70.0]})}}


def test_paper_average_is_over_the_reports_tasks_or_none():
    assert paper_average({"rte": 70.4, "sts": 90.0}, ["rte", "sts"]) == \
        pytest.approx(80.2)
    assert paper_average({"rte": 70.4}, ["rte", "sts"]) is None


def test_paper_scores_are_checked_against_the_report():
    report = _report()
    assert check_paper_scores({"_source": "Table 1", "single": {"rte": 70}},
                              report, "p.json") == {"single": {"rte": 70}}
    for bad, message in (
            ([1], "p.json: expected a JSON object"),
            ({"bert": {"rte": 1}}, r"p.json: 'bert' is not a model of the "
                                   r"report \(its models: \['multi', "
                                   r"'single'\]\)"),
            ({"single": {"qqp": 1}}, "'single' must map tasks of the report"),
            ({"single": {"rte": "high"}}, "to numbers"),
            ({"single": {"rte": True}}, "to numbers")):
        with pytest.raises(FigureError, match=message):
            check_paper_scores(bad, report, "p.json")


def test_figure_is_a_png_of_the_expected_size_rebuilt_byte_for_byte(
        tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    paper = {"single": {"rte": 70.4, "sts": 90.0}}
    draw_scores(_report(), str(first), paper, title="t")
    draw_scores(_report(), str(second), paper, title="t")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 3 columns (rte, sts, avg): (2.2 * 3 + 1.5) x 3.6 inches at 120 dpi.
    assert image.imread(str(first)).shape[:2] == (432, 972)
    draw_scores(_report(), str(second))  # without the paper: other bytes
    assert first.read_bytes() != second.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]  # no temp
