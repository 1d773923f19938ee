"""The guides' Python examples run as written (from the top of the repository, as the guides say)."""

import os
import re
import socket
import subprocess
import sys
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


def test_distributed_guide_python_example_runs(tmp_path):
    """docs/distributed.md's torch.distributed program, saved as a file and run from the top of the
    repository as the guide says, on a free port: each of its 2 ranks prints the sharded loss next to
    the one-process kd_loss, and the largest difference of its gradient columns."""
    text = (REPO / "docs" / "distributed.md").read_text()
    program = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "mp.spawn(rank_main" in program
    script = tmp_path / "vocabulary_parallel.py"
    script.write_text(program)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_PORT=str(port))
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    # The two processes share the pipe: a line's text and its newline may arrive apart.
    number = r"(-?[0-9.]+(?:e[-+][0-9]+)?)"
    lines = re.findall(rf"rank (\d): loss {number}, one process {number}, gradient difference {number}", done.stdout)
    assert sorted(rank for rank, *_ in lines) == ["0", "1"], done.stdout
    for _, loss, one, difference in lines:
        # Printed to 6 decimals: the float32 losses agree within 1e-5 relative (tests/sharded.test.cpp's
        # bound), the gradient within 2e-6 of its scale (alpha T + 1 - alpha) / N = 1.5 / 16.
        assert abs(float(loss) - float(one)) <= 1e-5 * max(1.0, abs(float(one))) + 1e-6
        assert float(difference) <= 2e-6 * 1.5 / 16
