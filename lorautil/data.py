"""MNIST as normalised tensors in memory, and DataLoader-identical batches (notebook 02)."""
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import atomic_path

# The source documents normalise with mean 0.1301 (the usual MNIST mean is 0.1307): we keep theirs.
MNIST_MEAN = 0.1301
MNIST_STD = 0.3081
DATA_DIR = Path(os.environ.get("LORAUTIL_DATA", Path(__file__).resolve().parents[1] / "data"))
MIRROR_VARIABLE = "MNIST_MIRROR"
# torchvision's MNIST.resources: the four official files and their MD5 sums (a test checks they agree). Kept here
# so that loading MNIST once it is extracted needs no torchvision, whose import takes ~1 s of every notebook.
MNIST_RESOURCES = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
FINETUNE_DIGITS = (2, 3, 5, 8, 9)  # the digits the documents' base model gets wrong most
OTHER_DIGITS = (0, 1, 4, 6, 7)     # the rest: what fine-tuning on FINETUNE_DIGITS may make it forget


class MNISTUnavailableError(RuntimeError):
    """MNIST could not be found, copied, verified or downloaded (notebook 02)."""


@dataclass
class MNISTTensors:
    """Normalised MNIST images (N, 784) and labels (N,) held in memory (notebook 02)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def to(self, device):
        """Copy both tensors to `device` (notebook 02)."""
        return MNISTTensors(self.images.to(device), self.labels.to(device))

    def first(self, n):
        """The first `n` images and labels, e.g. a quick evaluation subset (notebook 07)."""
        return MNISTTensors(self.images[:n], self.labels[:n])

    def only(self, digits):
        """The subset whose labels are in `digits`, in the original order (notebook 02)."""
        keep = torch.isin(self.labels, torch.as_tensor(list(digits), device=self.labels.device))
        return MNISTTensors(self.images[keep], self.labels[keep])


def rotate_digits(dataset, quarter_turns=1):
    """The same images turned by quarter_turns x 90 degrees counter-clockwise, labels kept: a new domain (notebook 05).

    A quarter turn moves pixels without interpolating them, so it is exact and cheap, and every label
    stays a different shape (unlike a half turn, which makes 6 and 9 look alike).
    """
    side = int(dataset.images.shape[1] ** 0.5)
    if side * side != dataset.images.shape[1]:
        raise ValueError(f"images of {dataset.images.shape[1]} pixels are not square: cannot rotate them")
    turned = torch.rot90(dataset.images.view(-1, side, side), quarter_turns, dims=(1, 2))
    return MNISTTensors(turned.reshape(len(dataset), -1), dataset.labels.clone())


VALIDATION_SIZE = 10_000  # as many as the test set, carved from the 60,000 training images
VALIDATION_SEED = 0


def split_validation(train_set, size=VALIDATION_SIZE, seed=VALIDATION_SEED):
    """(train, validation): `size` images held out of `train_set` at random, to choose settings on (notebook 05).

    A generator of its own makes the split the same whatever the global RNG did before; both parts keep
    the original order. The test set then only reports."""
    if not 0 < size < len(train_set):
        raise ValueError(f"size must be between 1 and {len(train_set) - 1}, got {size}")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
    held_out, kept = order[:size].sort().values, order[size:].sort().values
    return MNISTTensors(*train_set[kept]), MNISTTensors(*train_set[held_out])


def mnist_files():
    """The four official file names and their MD5 sums, as torchvision checks them (notebook 02)."""
    return list(MNIST_RESOURCES)


def check_integrity(path, md5):
    """True if `path` is a file whose MD5 is `md5` (torchvision's check, without importing it)."""
    path = Path(path)
    if not path.is_file():
        return False
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == md5


def copy_from_mirror(mirror, root=DATA_DIR):
    """Copy the four .gz files from a local mirror folder into `root`/MNIST/raw, MD5-checked (notebook 02)."""
    mirror, raw = Path(mirror), Path(root) / "MNIST" / "raw"
    if not mirror.is_dir():
        raise MNISTUnavailableError(
            f"{MIRROR_VARIABLE}={mirror} is not a folder. Point it at a folder holding the four MNIST "
            "files (train-images-idx3-ubyte.gz, ...) or unset it to download from the internet.")
    raw.mkdir(parents=True, exist_ok=True)
    for name, md5 in mnist_files():
        target = raw / name
        if check_integrity(target, md5):
            continue
        source = mirror / name
        if not source.is_file():
            raise MNISTUnavailableError(
                f"{source} is missing. The folder named by {MIRROR_VARIABLE} must hold all four official "
                f"MNIST files: {', '.join(n for n, _ in mnist_files())}.")
        # Copy to a temporary name, check it, then rename: an interrupted copy never looks complete.
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
            if not check_integrity(tmp, md5):
                raise MNISTUnavailableError(
                    f"{source} is corrupt or truncated (its MD5 is not {md5}). Copy the file again from a "
                    "good source, or unset MNIST_MIRROR to download it.")


def _remove_unverified(raw):
    """Delete what a failed download or extraction may have left half-written in `raw`."""
    for name, md5 in mnist_files():
        archive, extracted = raw / name, raw / name[:-3]
        if archive.exists() and not check_integrity(archive, md5):
            archive.unlink()
        if extracted.exists():  # cheap to extract again from a verified archive
            extracted.unlink()


def mnist_dataset(train, root=DATA_DIR, transform=None):
    """torchvision's MNIST, filled from $MNIST_MIRROR when set, else downloaded (notebook 02)."""
    root = Path(root)
    mirror = os.environ.get(MIRROR_VARIABLE)
    if mirror:
        copy_from_mirror(mirror, root)
    from torchvision import datasets  # here: its import costs ~1 s, and only the first load needs it

    try:
        # With verified .gz files in place, torchvision checks them and extracts them: no network needed.
        return datasets.MNIST(str(root), train=train, download=True, transform=transform)
    except RuntimeError as error:
        _remove_unverified(root / "MNIST" / "raw")
        hint = (f"the files in {mirror} did not load" if mirror else
                "there is no network, or the download was interrupted")
        raise MNISTUnavailableError(
            f"Could not prepare MNIST in {root} ({hint}). Offline, set {MIRROR_VARIABLE} to a folder "
            f"holding the four official .gz files, e.g. {MIRROR_VARIABLE}=/media/usb/mnist, and run "
            f"again. Details: {str(error).strip().splitlines()[0]}") from error


def normalize(images_uint8):
    """uint8 images -> float32, bit-identical to ToTensor() then Normalize(0.1301, 0.3081) (notebook 02)."""
    x = images_uint8.to(torch.float32).div(255)
    return x.sub_(torch.tensor([MNIST_MEAN])).div_(torch.tensor([MNIST_STD])).flatten(1)


def read_idx(path):
    """An IDX file of unsigned bytes (MNIST's format) as a uint8 tensor of the shape its header gives."""
    data = Path(path).read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":  # two zero bytes, then 0x08: unsigned bytes
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = bytearray(data[4 + 4 * ndim:])
    if len(body) != torch.Size(shape).numel():
        raise ValueError(f"{path} holds {len(body):,} bytes of data, its header says {shape}")
    return torch.frombuffer(body, dtype=torch.uint8).view(shape)


def load_mnist(train, root=DATA_DIR, device=None):
    """MNIST as MNISTTensors: normalised images (N, 784) and labels, on `device` (notebook 02)."""
    raw = Path(root) / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    try:  # once extracted, read the files as torchvision's MNIST does (the same tensors), without torchvision
        images, labels = (read_idx(raw / f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
        labels = labels.long()
    except (OSError, ValueError):
        dataset = mnist_dataset(train, root)  # copied from the mirror or downloaded, checked, extracted
        images, labels = dataset.data, dataset.targets
    expected = 60000 if train else 10000
    if images.shape != (expected, 28, 28) or labels.shape != (expected,):
        raise MNISTUnavailableError(
            f"MNIST in {root} has unexpected shape {tuple(images.shape)}: delete {Path(root) / 'MNIST'} "
            "and run again to re-extract it.")
    tensors = MNISTTensors(normalize(images), labels.clone())
    return tensors.to(device) if device is not None else tensors


class Batches:
    """Mini-batches identical to DataLoader(dataset, batch_size, shuffle), drawn from memory (notebook 02).

    Like a DataLoader, each pass draws its shuffle seed from the global RNG when iteration starts.
    A DataLoader over a TensorDataset with a BatchSampler gives the same batches bit for bit, but
    iterating an epoch took 1.56 s against 0.57 s this way (2-core CPU), so the course keeps this.
    """

    def __init__(self, dataset, batch_size, shuffle, digits=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset.only(digits) if digits is not None else dataset
        self.batch_size, self.shuffle = batch_size, shuffle
        if len(self.dataset) == 0:
            raise ValueError(f"no images with digits {digits}: choose digits from 0 to 9")

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def order(self):
        """The sample order of one pass, consuming the global RNG exactly as a DataLoader does."""
        n = len(self.dataset)
        # DataLoader's iterator first draws its base seed, then RandomSampler draws its own seed.
        torch.empty((), dtype=torch.int64).random_()
        if not self.shuffle:
            return torch.arange(n)
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def __iter__(self):
        order = self.order().to(self.dataset.labels.device)
        for start in range(0, len(order), self.batch_size):
            yield self.dataset[order[start:start + self.batch_size]]


def batches(dataset, batch_size, shuffle, digits=None):
    """Batches of `dataset` (optionally only `digits`) exactly as a DataLoader would give them (notebook 02)."""
    return Batches(dataset, batch_size, shuffle, digits)


def prepare(root=DATA_DIR):
    """Fetch and check both MNIST splits, printing where they are (notebook 02)."""
    for train in (True, False):
        dataset = load_mnist(train, root)
        print(f"MNIST {'train' if train else 'test'}: {len(dataset):,} images ready in {root}")


def main():
    """`make data`: prepare MNIST, or exit with the error's advice."""
    try:
        prepare()
    except MNISTUnavailableError as error:
        raise SystemExit(f"error: {error}") from None
