"""Loaded by every pytest run in this repository, the notebooks' included."""
import os

# Exercise checks raise instead of printing "not yet", so a check that rejects the instructor's solution fails the
# run (lorautil/exercises). Kernels that nbval starts inherit this environment.
os.environ["LORAUTIL_STRICT_CHECKS"] = "1"
