import os
from pathlib import Path

import matplotlib
import pytest
import torch

import lorautil

matplotlib.use("Agg")  # no display in CI or a container: draw to memory
# One thread, as the notebooks use: batches of 10 gain nothing from more, and threads on a busy CPU wait on each other.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mirror():
    """The offline MNIST mirror: $MNIST_MIRROR, else ../shared/data/mnist beside the repository."""
    path = Path(os.environ.get("MNIST_MIRROR") or REPO.parent / "shared" / "data" / "mnist")
    if not (path / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.fail(f"no MNIST mirror at {path}: set MNIST_MIRROR to the folder with the four .gz files")
    return path


@pytest.fixture(scope="session")
def train_set():
    return lorautil.load_mnist(True)


@pytest.fixture(scope="session")
def test_set():
    return lorautil.load_mnist(False)


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return lorautil.DigitsNet()


IDENTITY_CHECKS = []  # (test id, max difference, tolerance), reported at the end of the run


@pytest.fixture
def assert_identity(request):
    """lorautil.assert_identity, recording what each check saw for the end-of-run report."""

    def check(actual, expected):
        difference, tolerance = lorautil.assert_identity(actual, expected)
        IDENTITY_CHECKS.append((request.node.nodeid, difference, tolerance))
        return difference

    return check


def pytest_terminal_summary(terminalreporter):
    if not IDENTITY_CHECKS:
        return
    write = terminalreporter.write_line
    write(f"float64 identity checks on this CPU ({torch.backends.cpu.get_cpu_capability()} kernels): "
          "largest difference / tolerance per test")
    worst = {}
    for nodeid, difference, tolerance in IDENTITY_CHECKS:
        if nodeid not in worst or difference / tolerance > worst[nodeid][0] / worst[nodeid][1]:
            worst[nodeid] = (difference, tolerance)
    for nodeid, (difference, tolerance) in sorted(worst.items()):
        write(f"  {difference:9.2e} / {tolerance:8.2e}  {nodeid.split('::', 1)[1]}")
