"""Write the student edition: every notebook without outputs and without solutions, exercises as answer cells.

Usage: python tools/make_student.py [--out student] notebooks/01_matrix_rank.ipynb [...]

The instructor notebooks are the source of truth. A solution code cell (tagged `solution`) becomes an answer cell
tagged `exercise`: the lines between `### BEGIN SOLUTION` and `### END SOLUTION` (nbgrader's markers) are dropped,
so what stays is the placeholder before them (`name = ...`), which the check cell that follows (tagged `check`)
reads. A solution without markers becomes an empty answer cell; solution Markdown cells are dropped.
"""
import argparse
import shutil
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUDENT_NOTE = ("*Student edition.* Each exercise has an answer cell: replace every `...` with your answer and run "
                "it. Where a check cell follows, run it too: it says correct, or not yet with a hint (a second "
                "hint if you try again).")


def tags(cell):
    return cell.metadata.get("tags", [])


def without_solution(source, name):
    """The lines of `source` outside the BEGIN/END markers: what the student's answer cell keeps."""
    kept, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{name}: {BEGIN} inside a solution region")
            inside = True
        elif stripped == END:
            if not inside:
                raise ValueError(f"{name}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"{name}: {BEGIN} without {END}")
    return kept


def answer_cell(cell, name):
    """The student's answer cell for one solution code cell."""
    first, *rest = cell.source.splitlines() or [""]
    number = first.removeprefix("# Solution to exercise").strip()
    if BEGIN in cell.source:
        body = without_solution("\n".join(rest), name)
        header = f"# Exercise {number}: replace each ... with your answer, run this cell, then the check below"
    else:
        body = []
        header = f"# Exercise {number}: your code (no automatic check for this one)"
    return new_code_cell("\n".join([header, *body]).rstrip() + "\n", metadata={"tags": ["exercise"]})


def student_notebook(nb, name):
    """A copy of `nb` for students: no outputs, no solutions, answer and check cells for the exercises."""
    cells = []
    for cell in nb.cells:
        if "solution" in tags(cell):
            if cell.cell_type == "code":
                cells.append(answer_cell(cell, name))
            continue  # a solution's explanation in Markdown
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Exercises"):
            heading, _, rest = cell.source.lstrip().partition("\n")
            cell.source = "\n\n".join(part for part in (heading, STUDENT_NOTE, rest.strip()) if part)
        cells.append(cell)
    student = nbformat.from_dict(dict(nb))
    student.cells = cells
    return student


def main(arguments):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("student"))
    options = parser.parse_args(arguments)
    # Write everything to a fresh folder beside the target, then swap it in: never half an edition on disk.
    staging = options.out.with_name(options.out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for path in options.notebooks:
            nb = nbformat.read(path, as_version=4)
            nbformat.write(student_notebook(nb, path.name), staging / path.name)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(options.out, ignore_errors=True)
    staging.rename(options.out)
    print(f"student edition of {len(options.notebooks)} notebooks in {options.out}/")


if __name__ == "__main__":
    main(sys.argv[1:])
