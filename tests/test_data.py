import hashlib
import itertools
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets

import lorautil
from lorautil.data import mnist_files
from lorautil.reference import document_transform


def loader_batches(dataset, batch_size, shuffle, count=None):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)
    return [(x.flatten(1), y) for x, y in itertools.islice(loader, count)]


def assert_same_batches(expected, got):
    assert len(expected) == len(got)
    for (x1, y1), (x2, y2) in zip(expected, got, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_normalised_images_are_bit_identical_to_totensor_normalize(test_set):
    reference = datasets.MNIST(str(lorautil.DATA_DIR), train=False, transform=document_transform())
    expected = torch.stack([reference[i][0].flatten() for i in range(0, 10000, 7)])
    assert torch.equal(test_set.images[::7], expected)
    assert test_set.images.dtype == torch.float32 and test_set.images.shape == (10000, 784)


def test_shuffled_epoch_equals_dataloader_bit_for_bit_and_consumes_the_same_rng(test_set):
    reference = lorautil.mnist_dataset(False, transform=document_transform())
    torch.manual_seed(3)
    expected = loader_batches(reference, 10, shuffle=True)
    after_loader = torch.rand(3)
    torch.manual_seed(3)
    got = list(lorautil.batches(test_set, 10, shuffle=True))
    assert_same_batches(expected, got)
    assert torch.equal(torch.rand(3), after_loader)


def test_second_pass_reshuffles_like_a_dataloader(test_set):
    reference = lorautil.mnist_dataset(False, transform=document_transform())
    torch.manual_seed(5)
    loader = DataLoader(reference, batch_size=64, shuffle=True)
    expected = [[(x.flatten(1), y) for x, y in itertools.islice(loader, 5)] for _ in range(2)]
    torch.manual_seed(5)
    ours = lorautil.batches(test_set, 64, shuffle=True)
    got = [list(itertools.islice(iter(ours), 5)) for _ in range(2)]
    assert_same_batches(expected[0], got[0])
    assert_same_batches(expected[1], got[1])
    assert not torch.equal(got[0][0][1], got[1][0][1])


def test_unshuffled_and_digit_filtered_batches_equal_dataloader(train_set):
    reference = lorautil.mnist_dataset(True, transform=document_transform())
    torch.manual_seed(0)
    assert_same_batches(loader_batches(reference, 10, False, 30),
                        list(itertools.islice(iter(lorautil.batches(train_set, 10, False)), 30)))
    digits = (2, 3, 5, 8, 9)
    keep = [i for i, t in enumerate(reference.targets.tolist()) if t in digits]
    torch.manual_seed(1)
    expected = loader_batches(Subset(reference, keep), 10, True, 200)
    torch.manual_seed(1)
    ours = lorautil.batches(train_set, 10, True, digits=digits)
    assert len(ours) == -(-len(keep) // 10)
    assert_same_batches(expected, list(itertools.islice(iter(ours), 200)))


def test_digit_filter_keeps_only_those_digits_in_order(train_set):
    subset = train_set.only([7])
    assert set(subset.labels.tolist()) == {7}
    assert len(subset) == int((train_set.labels == 7).sum())
    assert torch.equal(subset.images[0], train_set.images[(train_set.labels == 7).nonzero()[0, 0]])
    with pytest.raises(ValueError, match="no images"):
        lorautil.batches(train_set, 10, True, digits=[11])
    with pytest.raises(ValueError, match="batch_size"):
        lorautil.batches(train_set, 0, True)


def test_mirror_copy_verifies_checksums(mirror, tmp_path):
    lorautil.copy_from_mirror(mirror, tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for name, md5 in mnist_files():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    assert not list(raw.glob("*.part"))


def test_corrupt_mirror_file_is_refused_and_nothing_half_written(mirror, tmp_path):
    bad = tmp_path / "mirror"
    shutil.copytree(mirror, bad)
    name = "t10k-labels-idx1-ubyte.gz"
    data = (bad / name).read_bytes()
    (bad / name).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(lorautil.MNISTUnavailableError, match="corrupt or truncated"):
        lorautil.copy_from_mirror(bad, tmp_path / "root")
    raw = tmp_path / "root" / "MNIST" / "raw"
    assert not (raw / name).exists()
    assert not list(raw.glob("*.part"))


def test_missing_mirror_file_or_folder_says_what_to_do(mirror, tmp_path):
    partial = tmp_path / "mirror"
    shutil.copytree(mirror, partial)
    (partial / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(lorautil.MNISTUnavailableError, match="train-images-idx3-ubyte.gz is missing"):
        lorautil.copy_from_mirror(partial, tmp_path / "root")
    with pytest.raises(lorautil.MNISTUnavailableError, match="is not a folder"):
        lorautil.copy_from_mirror(tmp_path / "nowhere", tmp_path / "root")


def test_offline_without_mirror_gives_a_clear_error_and_leaves_no_partial_files(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MIRROR", raising=False)
    # Port 9 on loopback refuses connections at once: the same failure as having no network.
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(lorautil.MNISTUnavailableError, match="MNIST_MIRROR"):
        lorautil.load_mnist(False, root=tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    assert not raw.exists() or not any(raw.iterdir())


def test_corrupt_extracted_file_is_reported_and_removed(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_MIRROR", str(mirror))
    lorautil.load_mnist(False, root=tmp_path)
    extracted = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:1000])
    with pytest.raises(lorautil.MNISTUnavailableError, match="Could not prepare MNIST"):
        lorautil.load_mnist(False, root=tmp_path)
    assert not extracted.exists()
    assert len(lorautil.load_mnist(False, root=tmp_path)) == 10000  # re-extracted from the archive


def test_validation_split_is_fixed_disjoint_and_keeps_the_order(train_set):
    torch.manual_seed(123)  # the global RNG must not matter
    kept, held_out = lorautil.split_validation(train_set)
    torch.manual_seed(456)
    kept_again, held_out_again = lorautil.split_validation(train_set)
    assert torch.equal(held_out.labels, held_out_again.labels) and torch.equal(kept.images, kept_again.images)
    assert len(kept) == 50_000 and len(held_out) == lorautil.VALIDATION_SIZE == 10_000
    # Every training image lands in exactly one part: compare sorted pixel sums as fingerprints.
    fingerprints = torch.cat([kept.images.sum(1), held_out.images.sum(1)]).sort().values
    assert torch.equal(fingerprints, train_set.images.sum(1).sort().values)
    assert set(held_out.labels.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="size must be between 1 and 59999"):
        lorautil.split_validation(train_set, size=60_000)


def test_rotated_digits_are_an_exact_quarter_turn_with_the_labels_kept(test_set):
    rotated = lorautil.rotate_digits(test_set.first(50))
    assert len(rotated) == 50 and torch.equal(rotated.labels, test_set.labels[:50])
    image, turned = test_set.images[7].view(28, 28), rotated.images[7].view(28, 28)
    # counter-clockwise: the top row of the turned image is the original's last column, read top to bottom
    assert torch.equal(turned[0], image[:, -1])
    assert not torch.equal(turned, image)
    four_turns = lorautil.rotate_digits(test_set.first(50), quarter_turns=4)
    assert torch.equal(four_turns.images, test_set.images[:50])
    back = lorautil.rotate_digits(rotated, quarter_turns=-1)
    assert torch.equal(back.images, test_set.images[:50])


def test_rotating_images_that_are_not_square_is_refused():
    flat = lorautil.MNISTTensors(torch.zeros(3, 10), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="not square"):
        lorautil.rotate_digits(flat)


def test_the_file_list_is_torchvisions_and_reading_the_extracted_files_gives_its_tensors(test_set):
    assert mnist_files() == list(datasets.MNIST.resources)
    reference = datasets.MNIST(str(lorautil.DATA_DIR), train=False)
    assert torch.equal(test_set.images, lorautil.normalize(reference.data))
    assert torch.equal(test_set.labels, reference.targets) and test_set.labels.dtype == reference.targets.dtype


def test_loading_extracted_mnist_does_not_import_torchvision(test_set):
    code = ("import sys, lorautil; lorautil.load_mnist(False); lorautil.load_mnist(True); "
            "print(sorted(name for name in sys.modules if name.startswith('torchvision')))")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert finished.stdout.strip() == "[]", finished.stdout


def test_a_truncated_extracted_file_is_read_again_from_its_archive(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("MNIST_MIRROR", str(mirror))
    first = lorautil.load_mnist(False, root=tmp_path)
    extracted = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:1000])
    with pytest.raises(ValueError, match="header says"):
        lorautil.data.read_idx(extracted)
    extracted.unlink()
    again = lorautil.load_mnist(False, root=tmp_path)
    assert torch.equal(first.images, again.images)
