"""The exercise checks: feedback instead of tracebacks, hints in turn, strict mode for CI, the student edition."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lorautil import exercises
from lorautil.exercises import EXERCISES, ExerciseNotCorrect, check_exercise, feedback

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r'check_exercise\("([^"]+)"')


def check_cells(nb):
    return [cell for cell in nb.cells if "check" in cell.metadata.get("tags", [])]


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    """Checks as a learner meets them (the repository's conftest makes them strict for the notebooks)."""
    monkeypatch.delenv(exercises.STRICT_ENV, raising=False)
    exercises._attempts.clear()


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_a_blank_answer_is_not_answered_yet_and_a_wrong_one_gets_the_hints_in_turn(key, capsys):
    for blank in (..., {"a": ...}, [1, ...]):
        check_exercise(key, blank)
        assert "not answered yet" in capsys.readouterr().out
    hints = EXERCISES[key].hints
    for attempt in range(len(hints) + 1):  # an answer of the wrong kind, without the context the check needs
        correct, message = feedback(key, object())
        assert not correct and "not yet" in message
        assert f"Hint {min(attempt + 1, len(hints))} of {len(hints)}: " in message


def test_strict_mode_raises_for_blank_and_wrong_answers(monkeypatch):
    monkeypatch.setenv(exercises.STRICT_ENV, "1")
    key = sorted(EXERCISES)[0]
    for answer in (..., object()):
        with pytest.raises(ExerciseNotCorrect):
            check_exercise(key, answer)


def test_an_unknown_exercise_is_named_with_the_known_ones():
    with pytest.raises(KeyError, match="known: "):
        check_exercise("99.9", 1)


def test_every_notebook_checks_at_least_two_exercises_and_every_check_is_used_once():
    used = []
    for path in NOTEBOOKS:
        cells = check_cells(nbformat.read(path, as_version=4))
        keys = [match for cell in cells for match in CHECK_CALL.findall(cell.source)]
        assert len(set(keys)) >= 2, f"{path.name}: {len(set(keys))} auto-checked exercises"
        used += keys
    assert sorted(used) == sorted(EXERCISES), "each registered check is called by exactly one check cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_committed_solutions_pass_their_checks(path):
    for cell in check_cells(nbformat.read(path, as_version=4)):
        text = "".join(output.get("text", "") for output in cell.outputs)
        assert re.fullmatch(r"Exercise \S+: correct\.\n", text), (path.name, cell.source, text)


def test_the_student_edition_has_no_solutions_no_outputs_and_an_answer_cell_before_each_check(tmp_path):
    out = tmp_path / "student"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_student.py"), "--out", str(out), *map(str, NOTEBOOKS)],
                   check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in NOTEBOOKS]
    for path in sorted(out.iterdir()):
        nb = nbformat.read(path, as_version=4)
        text = nbformat.writes(nb)
        assert "BEGIN SOLUTION" not in text and "# Solution to exercise" not in text, path.name
        assert not [cell for cell in nb.cells if "solution" in cell.metadata.get("tags", [])]
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), path.name
        for i, cell in enumerate(nb.cells):
            if "check" in cell.metadata.get("tags", []):
                answer = nb.cells[i - 1]
                assert "exercise" in answer.metadata.get("tags", []), (path.name, cell.source)
                assert "..." in answer.source, (path.name, answer.source)


def test_the_student_edition_runs_clean_and_every_check_says_not_answered_yet(tmp_path):
    """Every student notebook, executed as a learner would before answering: lesson cells run, checks give feedback."""
    out = tmp_path / "student"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_student.py"), "--out", str(out), *map(str, NOTEBOOKS)],
                   check=True, capture_output=True)
    env = {name: value for name, value in os.environ.items() if name != exercises.STRICT_ENV}
    env["LORAUTIL_NOTEBOOK_TIMES"] = str(tmp_path / "times.json")  # leave the real run's times alone
    runner = REPO / "tools" / "run_notebooks.py"
    finished = subprocess.run([sys.executable, str(runner), *map(str, sorted(out.iterdir()))], capture_output=True,
                              text=True, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for path in sorted(out.iterdir()):
        for cell in check_cells(nbformat.read(path, as_version=4)):
            text = "".join(output.get("text", "") for output in cell.outputs)
            assert "not answered yet" in text and "Traceback" not in text, (path.name, cell.source, text)
