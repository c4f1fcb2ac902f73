import os

import numpy as np
import pytest

from bam_tf.data.examples import DataError
from bam_tf.data.loading import load_split
from bam_tf.tasks import get_task

RTE = get_task("rte")
HEADER = b"index\tsentence1\tsentence2\tlabel\n"


def _write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def test_tiny_glue_layouts(tiny_glue):
    cola = load_split(get_task("cola"), "train", tiny_glue)
    assert len(cola) == 64  # header-less: no row lost
    mrpc = load_split(get_task("mrpc"), "train", tiny_glue)
    assert len(mrpc) == 128
    undoubled = load_split(get_task("mrpc"), "train", tiny_glue,
                           double_unordered=False)
    assert len(undoubled) == 64
    head = load_split(get_task("mrpc"), "train", tiny_glue, max_examples=5)
    assert head.eids.tolist() == [0, 1, 2, 3, 4, 64, 65, 66, 67, 68]
    test = load_split(get_task("sts"), "test", tiny_glue)
    assert test.labels is None and len(test) == 10


def test_lower_case_folder_bom_and_quotes(tmp_path):
    _write(f"{tmp_path}/rte", "train.tsv",
           b"\xef\xbb\xbf" + HEADER + b'0\tHe said "hi\tb\tentailment\r\n'
           b"1\ta\tb\tnot_entailment")
    examples = load_split(RTE, "train", str(tmp_path))
    assert examples.text_a == ['He said "hi', "a"]
    assert examples.labels.tolist() == [0, 1]


@pytest.mark.parametrize("content, message", [
    (HEADER + b"0\ta\tb\tentailment\n1\ta\tb\n",
     r"train.tsv, line 3: expected 4 tab-separated fields, found 3"),
    (HEADER + b"0\ta\tb\tmaybe\n",
     r"train.tsv, line 2: unknown label 'maybe'; expected one of "
     r"\['entailment', 'not_entailment'\]"),
    (b"", r"train.tsv: the file is empty"),
    (HEADER, r"train.tsv: the file has a header but no rows"),
    (HEADER + b"0\ta\tb\tentailment\n1\t\xff\xfe\tb\tentailment\n",
     r"train.tsv, line 3: not valid UTF-8"),
    (HEADER + b"0\ta\tb\tentailment\n\n",
     r"train.tsv, line 3: an empty line; expected 4 tab-separated "
     r"fields \(remove the line\)"),
])
def test_bad_rows_name_file_line_and_expectation(tmp_path, content, message):
    _write(f"{tmp_path}/RTE", "train.tsv", content)
    with pytest.raises(DataError, match=message):
        load_split(RTE, "train", str(tmp_path))


def test_regression_label_out_of_range(tmp_path):
    header = b"\t".join([b"c"] * 10) + b"\n"
    row = b"\t".join([b"x"] * 9) + b"\t7.5\n"
    _write(f"{tmp_path}/STS-B", "train.tsv", header + row)
    with pytest.raises(DataError, match=r"line 2: label '7.5' is not a "
                       r"number in \[0.0, 5.0\]"):
        load_split(get_task("sts"), "train", str(tmp_path))


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError, match="no folder RTE or rte under"):
        load_split(RTE, "train", str(tmp_path))
    with pytest.raises(DataError, match=f"{tmp_path}/nope: no such folder; "
                       "--glue_dir is the folder that holds the task "
                       r"folders \(RTE or rte for 'rte'\)"):
        load_split(RTE, "train", str(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=f"{tmp_path}/file: a file, not "
                       "a folder; --glue_dir"):
        load_split(RTE, "train", str(tmp_path / "file"))
    os.makedirs(f"{tmp_path}/RTE")
    with pytest.raises(DataError, match=r"RTE/dev.tsv: file not found"):
        load_split(RTE, "dev", str(tmp_path))


def test_ids_are_stable_row_positions(tiny_glue):
    a = load_split(RTE, "train", tiny_glue)
    b = load_split(RTE, "train", tiny_glue, max_examples=10)
    np.testing.assert_array_equal(a.eids[:10], b.eids)
    assert a.text_a[:10] == b.text_a


def test_mnli_layouts(tiny_glue):
    mnli = get_task("mnli")
    sizes = {s: len(load_split(mnli, s, tiny_glue)) for s in mnli.splits}
    assert sizes == {"train": 30, "dev_matched": 9, "dev_mismatched": 9,
                     "test_matched": 7, "test_mismatched": 7,
                     "diagnostic": 5}
    dev = load_split(mnli, "dev_mismatched", tiny_glue)
    # gold label = last of 16 fields, in the task's label order
    assert [mnli.label_list[i] for i in dev.labels[:3]] == [
        "entailment", "neutral", "contradiction"]
