"""The layout every script shares: the reader's part (docstring, imports, Args, networks, Agent, main) above one
marker line, and below it the run harness, the same text in all six scripts."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import sync_harness  # noqa: E402

SCRIPTS = sync_harness.SCRIPTS


def parts(script):
    part = sync_harness.split(script)
    assert part is not None, f"{script}.py must hold the marker line exactly once: {sync_harness.MARKER.strip()}"
    return part


def test_the_harness_is_the_same_text_in_every_script():
    harness = parts("td3")[1]
    differ = [script for script in SCRIPTS if parts(script)[1] != harness]
    assert not differ, f"harness differs from td3.py's in {differ}: change td3.py, then python tools/sync_harness.py"
    check = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sync_harness.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_the_check_names_a_script_whose_harness_drifted(tmp_path, monkeypatch):
    for script in SCRIPTS:
        text = "".join(parts(script))
        if script == "sac":  # one character changed below the marker
            text = text.replace("def launch(args)", "def launch(args) ")
        (tmp_path / f"{script}.py").write_text(text)
    monkeypatch.setattr(sync_harness, "ROOT", str(tmp_path))
    assert sync_harness.main(check=True) == 1
    assert sync_harness.main(check=False) == 0  # copies td3.py's harness into sac.py
    assert sync_harness.main(check=True) == 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_reader_part_reads_top_to_bottom_and_holds_no_harness(script):
    reader = parts(script)[0]
    tree = ast.parse(reader)
    assert isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)  # the docstring
    names = [node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
    assert names.index("Args") < names.index("Agent") < names.index("main"), names
    assert not {"Run", "launch", "RunFlags", "make_env"} & set(names)  # the harness stays below the marker
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])}
    assert not imported & (set(SCRIPTS) - {script}), "each script stands alone: it imports no other script"
