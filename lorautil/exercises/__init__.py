"""Checks for the exercises (student edition, `make student`): each prints correct, or not yet with a hint.

A notebook's check cell calls `check_exercise("04.1", answer, **context)` after the learner's answer cell. The
answer cell of the student edition starts as `name = ...`: an answer still `...` gets "not answered yet", and a
check that raises on a malformed answer says so as feedback, never as a traceback. With LORAUTIL_STRICT_CHECKS=1
(set by the test suite) anything but a correct answer raises, so that a check rejecting the instructor's solution
fails CI.
"""
import os
from collections import Counter
from dataclasses import dataclass

STRICT_ENV = "LORAUTIL_STRICT_CHECKS"


class ExerciseNotCorrect(AssertionError):
    """Raised in strict mode (the test suite) for an answer a check does not accept."""


@dataclass(frozen=True)
class Exercise:
    key: str
    check: object  # (answer, **context) -> True, False, or a string saying what is wrong
    hints: tuple


EXERCISES = {}
_attempts = Counter()


def exercise(key, *hints):
    """Register the decorated function as the check of exercise `key` ("04.1"), with its hints, mildest first."""
    if len(hints) < 2:
        raise ValueError(f"exercise {key}: give at least two hints, mildest first")

    def register(check):
        if key in EXERCISES:
            raise ValueError(f"exercise {key} is registered twice")
        EXERCISES[key] = Exercise(key, check, tuple(hints))
        return check

    return register


def is_blank(answer):
    """True for an answer the learner has not filled in yet: `...`, or a container holding `...`."""
    if answer is ...:
        return True
    if isinstance(answer, dict):
        return any(is_blank(value) for value in answer.values())
    if isinstance(answer, (list, tuple)):
        return any(is_blank(value) for value in answer)
    return False


def feedback(key, answer, **context):
    """(correct, message) for `answer` to exercise `key`; each wrong try moves on to the next hint."""
    if key not in EXERCISES:
        raise KeyError(f"no exercise {key!r}; known: {', '.join(sorted(EXERCISES))}")
    exercise_ = EXERCISES[key]
    if is_blank(answer):
        return False, (f"Exercise {key}: not answered yet. "
                       "Replace each ... in the cell above with your answer and run it.")
    try:
        verdict = exercise_.check(answer, **context)
    except Exception as error:  # a malformed answer is feedback for the learner, not a traceback
        verdict = f"checking your answer raised {type(error).__name__}: {error}"
    if verdict is True:
        return True, f"Exercise {key}: correct."
    _attempts[key] += 1
    hint_number = min(_attempts[key], len(exercise_.hints))
    detail = f" {verdict.rstrip('.')}." if isinstance(verdict, str) and verdict else ""
    return False, (f"Exercise {key}: not yet.{detail}\n"
                   f"Hint {hint_number} of {len(exercise_.hints)}: {exercise_.hints[hint_number - 1]}")


def check_exercise(key, answer, **context):
    """Print whether `answer` to exercise `key` is correct, with a hint if not (the check cells, notebook 01 on)."""
    correct, message = feedback(key, answer, **context)
    print(message)
    if not correct and os.environ.get(STRICT_ENV) == "1":
        raise ExerciseNotCorrect(message)


def close(value, expected, rtol=1e-6, atol=0.0):
    """True if the number `value` equals `expected` to a relative tolerance (a helper for checks)."""
    value, expected = float(value), float(expected)
    return abs(value - expected) <= atol + rtol * abs(expected)


# The checks, one module per notebook; importing them registers them.
from . import appendix_a, nb01, nb02, nb03, nb04, nb05, nb06, nb07, nb08, nb09, nb10, nb11, nb12, nb13  # noqa: E402,F401

__all__ = ["EXERCISES", "ExerciseNotCorrect", "check_exercise", "close", "exercise", "feedback", "is_blank"]
