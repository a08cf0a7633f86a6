import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from run_notebooks import tidy_streams  # noqa: E402


def test_progress_bar_streams_are_merged_and_reduced_to_their_last_screen():
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="\rEpoch 1:   0%| 0/200"),
        nbformat.v4.new_output("stream", name="stderr", text="\rEpoch 1:  50%| 100/200\rEpoch 1: 100%| 200/200\n"),
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.74\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    tidy_streams(nb)
    assert [o["text"] for o in cell.outputs] == ["Epoch 1: 100%| 200/200\n", "accuracy 0.74\n"]
