"""Execute notebooks in place from a fresh kernel, one line per notebook with its wall time.

Usage: python tools/run_notebooks.py notebooks/01_matrix_rank.ipynb [...]
Stops at the first failing cell and says which notebook and cell failed.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from lorautil.files import atomic_path


def run(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # per-cell timestamps change on every run: keep them out of the committed file
        cell.metadata.pop("execution", None)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    # Keep what a terminal would show of progress bars: the text after each line's last \r.
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    with atomic_path(path) as tmp:  # a failed run never leaves a half-written notebook
        nbformat.write(nb, tmp)


def main(paths):
    if not paths:
        sys.exit("usage: python tools/run_notebooks.py NOTEBOOK.ipynb [...]")
    os.environ["LORAUTIL_TEXT_PROGRESS"] = "1"
    total = 0.0
    for name in paths:
        path = Path(name).resolve()
        start = time.perf_counter()
        try:
            run(path)
        except CellExecutionError as error:
            print(f"FAILED {path.name} after {time.perf_counter() - start:.1f} s; the notebook was left "
                  f"unchanged. The failing cell and its error:\n{error}", file=sys.stderr)
            sys.exit(1)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{path.name:<32} {seconds:7.1f} s", flush=True)
    print(f"{'total':<32} {total:7.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
