"""docs/python.md's example runs as written (from the top of the repository, as the guide says)."""

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_python_guide_example_runs(capsys):
    text = (REPO / "docs" / "python.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        namespace = {}
        exec(compile(example, "docs/python.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["head"].weight.grad is not None
    assert namespace["per_token"].shape == (16,)
    assert re.fullmatch(r"loss \d+\.\d{4} = soft \d+\.\d{4} \+ hard \d+\.\d{4}\n", capsys.readouterr().out)
