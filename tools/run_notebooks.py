"""Execute notebooks in place from a fresh kernel, one line per notebook with its wall time.

Usage: python tools/run_notebooks.py [--jobs N] notebooks/01_matrix_rank.ipynb [...]
Runs N notebooks at a time (default: one per CPU core, at most 4), each from its own fresh kernel; a
notebook with a failing cell is left unchanged, and the run names it and its cell and exits with 1.
"""
import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from lorautil.files import atomic_path

SLOW_CELL_SECONDS = 5.0  # a cell that runs longer shows a progress bar (issue 13)
PROGRESS_BAR = re.compile(r"\d+/\d+ \[")  # tqdm's text: "100%|####| 200/200 [00:01<00:00, ...]"


def cell_seconds(cell):
    """How long a cell ran, from the timestamps nbclient records; None if it has none."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()


def has_progress_bar(cell):
    return any(output.get("name") == "stderr" and PROGRESS_BAR.search(output.get("text", ""))
               for output in cell.outputs)


def slow_cells_without_bar(nb):
    """[(cell index, seconds, first line)] of the code cells that ran over SLOW_CELL_SECONDS without a bar."""
    slow = []
    for index, cell in enumerate(nb.cells):
        seconds = cell_seconds(cell) if cell.cell_type == "code" else None
        if seconds is not None and seconds > SLOW_CELL_SECONDS and not has_progress_bar(cell):
            slow.append((index, seconds, cell.source.splitlines()[0] if cell.source else ""))
    return slow


def run(path):
    """Execute one notebook in place; return its slow cells without a progress bar."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    # Keep what a terminal would show of progress bars: the text after each line's last \r.
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    slow = slow_cells_without_bar(nb)
    for cell in nb.cells:  # per-cell timestamps change on every run: keep them out of the committed file
        cell.metadata.pop("execution", None)
    with atomic_path(path) as tmp:  # a failed run never leaves a half-written notebook
        nbformat.write(nb, tmp)
    return slow


def run_timed(name):
    """(notebook name, seconds, error text or None, slow cells without a bar): one notebook, in a worker process."""
    path = Path(name).resolve()
    start = time.perf_counter()
    try:
        slow = run(path)
    except CellExecutionError as error:
        return path.name, time.perf_counter() - start, str(error), []
    return path.name, time.perf_counter() - start, None, slow


DATA = Path(os.environ.get("LORAUTIL_DATA", Path(__file__).resolve().parents[1] / "data"))
TIMES = Path(os.environ.get("LORAUTIL_NOTEBOOK_TIMES", DATA / "notebook_times.json"))  # a test points it elsewhere


def read_times():
    """{notebook file name: seconds} of the last runs, to start the longest first; {} when unknown."""
    try:
        return {name: float(seconds) for name, seconds in json.loads(TIMES.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def write_times(times):
    """Keep each notebook's last time beside the data (git-ignored); a failure to write costs only the order."""
    try:
        TIMES.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(TIMES) as tmp:
            Path(tmp).write_text(json.dumps(times, indent=1, sort_keys=True))
    except OSError:
        pass


def main(arguments):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    # Every notebook computes on one thread (README, "Threads"), so a 2-core machine runs two at once.
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4),
                        help="notebooks run at the same time, each in its own kernel (default: CPU cores, at most 4)")
    options = parser.parse_args(arguments)
    os.environ["LORAUTIL_TEXT_PROGRESS"] = "1"
    wall_start, total, failed = time.perf_counter(), 0.0, False
    jobs = max(1, min(options.jobs, len(options.notebooks)))
    previous = read_times()
    # Longest first (by the last run's times), so that no long notebook starts last while the other cores idle.
    order = sorted(options.notebooks, key=lambda name: -previous.get(Path(name).name, float("inf")))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {name: pool.submit(run_timed, name) for name in order}
        for notebook in options.notebooks:  # printed in the order given
            name, seconds, error, slow = futures[notebook].result()
            total += seconds
            if error is not None:
                failed = True
                print(f"FAILED {name} after {seconds:.1f} s; the notebook was left unchanged. The failing cell and "
                      f"its error:\n{error}", file=sys.stderr)
                continue
            previous[name] = seconds
            print(f"{name:<32} {seconds:7.1f} s", flush=True)
            for index, cell_time, first_line in slow:
                print(f"    cell {index} ran {cell_time:.1f} s without a progress bar: {first_line[:60]}", flush=True)
    write_times(previous)
    print(f"{'total':<32} {total:7.1f} s   (sum of the notebooks' times)")
    print(f"{'wall time':<32} {time.perf_counter() - wall_start:7.1f} s   ({jobs} at a time)")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
