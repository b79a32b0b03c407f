"""Data loading: IDX files right and wrong (raw and gz), the search order, checksums, the download path."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import HANG, SYSTEM_FASHION_MNIST, idx_bytes, start_patched, write_idx, write_split_files

from lenet_exp import data
from lenet_exp.data import DataError, DatasetSpec, load_dataset, load_idx

IMAGES = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
LABELS = np.array([0, 9, 4])


@pytest.mark.parametrize("gz", [False, True])
def test_reads_images_and_labels(tmp_path, gz):
    images = load_idx(write_idx(tmp_path / "img", idx_bytes(IMAGES), gz), "images")
    labels = load_idx(write_idx(tmp_path / "lab", idx_bytes(LABELS), gz), "labels")
    assert images.shape == (3, 28, 28) and images.dtype.is_floating_point is False
    assert np.array_equal(images.numpy(), IMAGES) and labels.tolist() == [0, 9, 4]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "content,kind,message",
    [
        (idx_bytes(IMAGES, magic=2049), "images", "not an IDX images file"),
        (idx_bytes(LABELS, magic=2051), "labels", "not an IDX labels file"),
        (idx_bytes(IMAGES)[:-100], "images", "truncated or corrupt"),
        (idx_bytes(IMAGES) + b"\0", "images", "bytes for 3 images"),
        (idx_bytes(np.zeros((2, 32, 32))), "images", "32x32, expected 28x28"),
        (idx_bytes(np.array([1, 10])), "labels", "label 10 out of range"),
        (b"\0\0", "labels", "not an IDX labels file"),
    ],
)
def test_wrong_files_are_refused_naming_the_file(tmp_path, gz, content, kind, message):
    path = write_idx(tmp_path / "bad", content, gz)
    with pytest.raises(DataError, match=message) as err:
        load_idx(path, kind)
    assert str(path) in str(err.value)


def test_corrupt_gzip_is_refused(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES))[:-30])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_idx(path, "images")


def test_checksum_mismatch_is_refused(tmp_path):
    path = write_idx(tmp_path / "lab", idx_bytes(LABELS), gz=False)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_idx(path, "labels", md5="0" * 32)


class Tiny:
    """Stands in for a torchvision data set class: its download writes the four files."""

    fail = False

    def __init__(self, root, train, download):
        raw = Path(root) / "Tiny" / "raw"
        if self.fail:
            raw.mkdir(parents=True)
            (raw / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03partial")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried http://mirror, got: timed out")
        write_split_files(raw, 6, 4, gz=False, seed=1)


class TinySpec(DatasetSpec):
    def torchvision_class(self) -> type:
        return Tiny  # the stand-in for torchvision's class


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered data set 'tiny' of 6 train / 4 test examples with no known checksums."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    spec = TinySpec("Tiny", (str(tmp_path / "system"),), "dataset-tiny", {"train": 6, "test": 4}, dict.fromkeys(names))
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    return spec


@pytest.mark.parametrize("gz", [False, True])
def test_root_is_searched_first_then_the_system_copy(tmp_path, tiny, gz):
    write_split_files(tmp_path / "system", 6, 4, gz=gz, seed=2)
    from_system, _ = load_dataset("tiny", tmp_path / "root", download=False)
    write_split_files(tmp_path / "root" / "Tiny" / "raw", 6, 4, gz=not gz, seed=3)
    from_root, test = load_dataset("tiny", tmp_path / "root", download=False)
    assert len(from_root) == 6 and len(test) == 4
    assert not from_root.images.equal(from_system.images)
    assert from_root.labels.dtype == torch.int64


def test_wrong_count_is_refused(tmp_path, tiny):
    write_split_files(tmp_path / "system", 5, 4, gz=True)
    with pytest.raises(DataError, match="5 images and 5 labels, expected 6"):
        load_dataset("tiny", tmp_path / "root", download=False)


def test_nothing_found_names_the_places_and_the_fixes(tmp_path, tiny):
    with pytest.raises(DataError) as err:
        load_dataset("tiny", tmp_path / "root", download=False)
    message = str(err.value)
    assert str(tmp_path / "root" / "Tiny" / "raw") in message and str(tmp_path / "system") in message
    assert "data.download=true" in message and "apt-get install dataset-tiny" in message and "\n" not in message


def test_download_lands_checked_files_in_root(tmp_path, tiny):
    train, test = load_dataset("tiny", tmp_path / "root", download=True)
    assert len(train) == 6 and len(test) == 4
    assert sorted(p.name for p in (tmp_path / "root" / "Tiny" / "raw").iterdir()) == sorted(tiny.md5)
    assert [p.name for p in (tmp_path / "root" / "Tiny").iterdir()] == ["raw"]  # no scratch folder left


def test_broken_download_leaves_nothing_a_later_run_would_take(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(Tiny, "fail", True)
    with pytest.raises(DataError, match="download of Tiny .* failed.*timed out"):
        load_dataset("tiny", tmp_path / "root", download=True)
    assert not (tmp_path / "root").exists()  # nothing left: no files, no empty folders made for the download
    with pytest.raises(DataError, match="files not found"):
        load_dataset("tiny", tmp_path / "root", download=False)


def test_system_fashion_mnist_is_the_official_release(fashion_mnist, tmp_path):
    train, test = load_dataset("fashion_mnist", tmp_path, download=False)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10 and test.labels.bincount().tolist() == [1000] * 10


def test_fashion_mnist_checksum_guards_a_damaged_copy(fashion_mnist, tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    for f in SYSTEM_FASHION_MNIST.glob("*.gz"):
        write_idx(raw / f.name.removesuffix(".gz"), gzip.decompress(f.read_bytes()), gz=False)
    labels = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.read_bytes())
    content[100] = (content[100] + 1) % 10  # one label changed: still a well-formed file
    labels.write_bytes(bytes(content))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: checksum mismatch"):
        load_dataset("fashion_mnist", tmp_path, download=False)


FAILING_DOWNLOAD = """
from torchvision import datasets
def fail(self, *args, **kwargs):
    mirrors = "".join(f"Tried https://mirror{i}.example/mnist/, got: <urlopen error timed out>\\n" for i in range(4))
    raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\\n" + mirrors)
datasets.MNIST.__init__ = fail
"""


def test_a_failed_downloads_whole_reason_with_its_remedy_reaches_every_record(tmp_path):
    """A long mirror error and a long data.root: the remedy at the end of the line survives in metrics.json, the
    summary and the console."""
    root = tmp_path / ("d" * 120) / ("e" * 120)
    args = ["-m", "data=mnist", f"data.root={root}", "device=cpu", "trainer.epochs=1", "hydra.sweep.dir=sweep"]
    proc = start_patched(FAILING_DOWNLOAD, *args, cwd=tmp_path)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 1, err
    remedy = "check the network, or put the files in data.root and set data.download=false"
    metrics = json.loads(next((tmp_path / "sweep").glob("0_*/metrics.json")).read_text())
    assert metrics["status"] == "failed" and metrics["error"].endswith(remedy) and "mirror3.example" in metrics["error"]
    assert f"- job 0: {metrics['error']}\n" in (tmp_path / "sweep" / "summary.md").read_text()
    assert f"Error: {metrics['error']}\n" in err and "\n" not in metrics["error"]
