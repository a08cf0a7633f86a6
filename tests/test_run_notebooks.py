"""tools/run_notebooks.py: `make run` executes notebooks in place, tidy, and never half-writes one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

RUNNER = Path(__file__).resolve().parents[1] / "tools" / "run_notebooks.py"


def write_notebook(path, *sources):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)


def run(*paths, options=()):
    # The runner keeps each notebook's last time in $LORAUTIL_DATA: point it beside the test's notebooks.
    env = {**os.environ, "LORAUTIL_DATA": str(Path(paths[0]).parent / "data")}
    return subprocess.run([sys.executable, str(RUNNER), *options, *map(str, paths)], capture_output=True, text=True,
                          env=env)


def test_progress_bars_are_reduced_to_their_last_screen(tmp_path):
    path = tmp_path / "bars.ipynb"
    write_notebook(path, "import sys\nsys.stderr.write('\\rstep 0/2'); sys.stderr.flush()\n"
                         "_ = sys.stderr.write('\\rstep 1/2\\rstep 2/2\\n')", "print('accuracy 0.74')")
    finished = run(path)
    assert finished.returncode == 0, finished.stderr
    assert "bars.ipynb" in finished.stdout and "total" in finished.stdout
    bar, printed = (cell.outputs for cell in nbformat.read(path, as_version=4).cells)
    assert [(o["name"], o["text"]) for o in bar] == [("stderr", "step 2/2\n")]
    assert [(o["name"], o["text"]) for o in printed] == [("stdout", "accuracy 0.74\n")]


def test_a_failing_notebook_is_left_unchanged_and_named(tmp_path):
    path = tmp_path / "broken.ipynb"
    write_notebook(path, "1 + 1", "raise ValueError('on purpose')")
    before = path.read_bytes()
    finished = run(path)
    assert finished.returncode == 1
    assert "FAILED broken.ipynb" in finished.stderr and "on purpose" in finished.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["broken.ipynb"]


def test_no_per_cell_timestamps_are_written(tmp_path):
    path = tmp_path / "plain.ipynb"
    write_notebook(path, "1 + 1")
    assert run(path).returncode == 0
    cell = nbformat.read(path, as_version=4).cells[0]
    assert "execution" not in cell.metadata and cell.outputs[0]["data"]["text/plain"] == "2"


def test_two_notebooks_at_once_are_each_run_and_reported_in_order(tmp_path):
    first, second = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    write_notebook(first, "print('first')")
    write_notebook(second, "print('second')")
    finished = run(first, second, options=("--jobs", "2"))
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0].startswith("a.ipynb") and lines[1].startswith("b.ipynb") and "2 at a time" in lines[-1]
    for path, text in ((first, "first\n"), (second, "second\n")):
        assert nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] == text
    # Their times are kept, so that the next run starts the longest first.
    assert set(json.loads((tmp_path / "data" / "notebook_times.json").read_text())) == {"a.ipynb", "b.ipynb"}


def test_a_slow_cell_without_a_progress_bar_is_named(tmp_path, monkeypatch):
    path = tmp_path / "slow.ipynb"
    write_notebook(path, "import time; time.sleep(5.5)  # no bar",
                   "import sys, time\nfrom tqdm import tqdm\nfor _ in tqdm(range(2), file=sys.stderr): time.sleep(2.8)")
    finished = run(path)
    assert finished.returncode == 0, finished.stderr
    named = [line for line in finished.stdout.splitlines() if "without a progress bar" in line]
    assert len(named) == 1 and "cell 0 ran" in named[0] and "no bar" in named[0], finished.stdout
