import os
from pathlib import Path

import pytest
import torch

import lorautil

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
