"""House rules that a reader of the tests relies on."""

import ast
import glob
import os

from conftest import REPO


def test_no_test_imports_another_test_module():
    """Shared helpers live in conftest.py, so that each test file reads
    on its own."""
    offenders = []
    for path in sorted(glob.glob(os.path.join(REPO, "tests", "*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = ([a.name for a in node.names]
                     if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom)
                     and node.module else [])
            offenders += [f"{os.path.basename(path)}: {n}" for n in names
                          if n.split(".")[0].startswith("test_")]
    assert offenders == []
