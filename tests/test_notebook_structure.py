"""Every notebook has the course's shape: goals, Summary, Sources, Exercises whose solutions are executed code."""
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXERCISE = re.compile(r"^\*\*(\d+)\. ")


def text(cell):
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def is_solution(cell):
    return "solution" in cell.metadata.get("tags", [])


@pytest.fixture(params=NOTEBOOKS, ids=lambda path: path.stem)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 8


def test_goals_then_summary_sources_and_exercises_in_that_order(notebook):
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and text(cells[0]).startswith("# ")
    assert "**Learning goals**" in text(cells[0])
    headings = [line for c in cells if c.cell_type == "markdown" for line in text(c).splitlines()
                if line.startswith("## ")]
    positions = [headings.index(h) for h in ("## Summary", "## Sources", "## Exercises")]
    assert positions == sorted(positions), headings


def test_prose_is_markdown_and_every_code_cell_ran_without_error(notebook):
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        assert "display(Markdown" not in text(cell)
        assert cell.execution_count is not None, f"not executed: {text(cell)[:80]!r}"
        assert not [o for o in cell.outputs if o.output_type == "error"], text(cell)[:80]


def test_every_exercise_has_an_executed_solution_right_after_it(notebook):
    cells = notebook.cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and "## Exercises" in text(c))
    numbers = []
    for i, cell in enumerate(cells[start:], start):
        if cell.cell_type == "markdown":
            assert "<details>" not in text(cell), "solutions are executed cells, not <details> blocks"
            match = EXERCISE.match(text(cell).lstrip().split("## Exercises")[-1].lstrip())
            if match and not is_solution(cell):
                numbers.append(int(match.group(1)))
                solution = cells[i + 1]
                assert solution.cell_type == "code" and is_solution(solution), f"exercise {numbers[-1]}"
                assert text(solution).startswith(f"# Solution to exercise {numbers[-1]}")
                assert solution.metadata.get("jupyter", {}).get("source_hidden") is True
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, numbers
