"""The two examples of docs/fake-manta.md "Use it in your own tests", run as written.

Each example is the fenced block after an ``<!-- example: FILENAME -->`` comment. The pytest one
runs in a separate project (``pytester``, in a subprocess, the plugin coming from its entry
point); the script runs with ``python``. node-manta's commands are put first on ``PATH``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.clients

DOC = Path(__file__).resolve().parents[2] / "docs" / "fake-manta.md"
_EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)\n```", re.DOTALL)


def examples() -> dict[str, str]:
    """File name -> source of every marked example in the doc."""
    return {name: code + "\n" for name, code in _EXAMPLE.findall(DOC.read_text())}


def test_the_doc_marks_both_examples() -> None:
    assert sorted(examples()) == ["fake_manta_demo.py", "test_with_fake_manta.py"]


def test_pytest_example(pytester: pytest.Pytester, node_manta_bin: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{node_manta_bin}{os.pathsep}{os.environ['PATH']}")
    name = "test_with_fake_manta.py"
    (pytester.path / name).write_text(examples()[name])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", name)
    result.assert_outcomes(passed=3)


def test_script_example(tmp_path: Path, node_manta_bin: Path) -> None:
    name = "fake_manta_demo.py"
    (tmp_path / name).write_text(examples()[name])
    env = {**os.environ, "PATH": f"{node_manta_bin}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, name], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi.txt\n"
