"""MNIST-style data sets as whole uint8 tensors: find, verify or download the IDX files, then slice batches.

Search order for each data set: `<root>/<Folder>/raw` (torchvision's layout), a system copy
(Debian/Ubuntu's `dataset-fashion-mnist` package), then a download through torchvision's data set
class when `download` is true. Every file is checked (magic, shape, count, labels, checksum).
torch and torchvision are imported where they are used, so a command can check its config without them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lenet_exp.errors import ConfigError
from lenet_exp.words import one_line

if TYPE_CHECKING:
    import torch

SPLITS = {"train": "train", "test": "t10k"}  # split -> file prefix of the official release
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX headers: uint8 data with 3 dims / 1 dim


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's files live and what they must contain."""

    folder: str  # torchvision's data set class, and its raw folder: <root>/<folder>/raw
    system_dirs: tuple[str, ...]  # folders of system packages holding the .gz files
    system_package: str | None  # the Debian/Ubuntu package that fills them
    counts: dict  # split -> number of examples
    md5: dict  # file name (uncompressed) -> md5 of its uncompressed bytes
    channels: int = 1  # image channels (grayscale)
    image_size: int = 28  # image height = width, pixels
    classes: int = 10  # labels 0 .. classes-1
    names: tuple[str, ...] = tuple("0123456789")  # what each label stands for

    def torchvision_class(self) -> type:
        from torchvision import datasets

        return getattr(datasets, self.folder)


DATASETS = {
    "fashion_mnist": DatasetSpec(
        "FashionMNIST",
        ("/usr/share/datasets/fashion-mnist",),
        "dataset-fashion-mnist",
        {"train": 60000, "test": 10000},
        {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "mnist": DatasetSpec(
        "MNIST",
        (),  # no system package ships MNIST
        None,
        {"train": 60000, "test": 10000},
        {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
}


class DataError(Exception):
    """A data file is missing, damaged or not what it claims to be; the message names file and remedy."""


@dataclass
class Split:
    """One split as tensors: images (N, 28, 28) uint8, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str = ""  # where the examples came from, for the log

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, limit: int | None) -> Split:
        if limit is None or limit >= len(self):
            return self
        return Split(self.images[:limit], self.labels[:limit], f"{self.source}, first {limit}")

    def hold_out(self, n: int, seed: int) -> tuple[Split, Split]:
        """(the rest, n examples held out): chosen at random by `seed` alone, each part in the split's own order."""
        import torch

        held = torch.zeros(len(self), dtype=torch.bool)
        held[torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]] = True
        rest = Split(self.images[~held], self.labels[~held], f"{self.source}, {n} held out for validation")
        return rest, Split(self.images[held], self.labels[held])  # its source is in the rest's: "n held out"

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device), self.source)


def load_idx(path: Path, kind: str, md5: str | None = None) -> torch.Tensor:
    """Read, check and return one IDX file (`kind` is 'images' or 'labels'), raw or .gz: magic, 28x28 images or 0-9
    labels, size, and the checksum when one is given."""
    try:
        data = path.read_bytes()
        data = gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or corrupt, delete it and rerun") from None
    if md5 is not None and (digest := hashlib.md5(data).hexdigest()) != md5:
        raise DataError(
            f"{path}: checksum mismatch (md5 {digest}, expected {md5}); "
            "the file is corrupt or not the official release, delete it and rerun"
        )
    magic, ndim = (IMAGE_MAGIC, 3) if kind == "images" else (LABEL_MAGIC, 1)
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if len(data) < header or found != magic:
        raise DataError(f"{path}: not an IDX {kind} file (magic {found}, expected {magic}); replace the file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28; replace the file")
    expected = header + dims[0] * (784 if kind == "images" else 1)
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes for {dims[0]} {kind}, expected {expected}; "
            "the file is truncated or corrupt, delete it and rerun"
        )
    import torch

    tensor = torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)
    if kind == "labels" and len(tensor) and int(tensor.max()) > 9:
        raise DataError(f"{path}: label {int(tensor.max())} out of range 0-9; replace the file")
    return tensor


def _file(folder: Path, name: str) -> Path | None:
    """The raw or gzipped copy of an IDX file in a folder, raw first."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def load_split(folder: Path, spec: DatasetSpec, split: str) -> Split:
    """Load and check one split of a data set from a folder holding the official IDX files."""
    prefix = SPLITS[split]
    names = {kind: f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte" for kind in ("images", "labels")}
    paths = {kind: _file(folder, name) for kind, name in names.items()}
    tensors = {kind: load_idx(paths[kind], kind, spec.md5.get(names[kind])) for kind in names}
    images, labels = tensors["images"], tensors["labels"].long()
    if len(images) != spec.counts[split] or len(labels) != spec.counts[split]:
        raise DataError(
            f"{paths['images']}: {len(images)} images and {len(labels)} labels, "
            f"expected {spec.counts[split]} of each; replace the files"
        )
    return Split(images, labels, f"{len(labels)} {split} examples from {paths['images']} and {paths['labels'].name}")


def _download(spec: DatasetSpec, raw_dir: Path) -> None:
    """Fetch the files with torchvision into a scratch folder, check them, then move them into place.
    A download broken midway leaves nothing behind: the scratch folder goes, and so do the folders made for it."""
    made = [d for d in (raw_dir, *raw_dir.parents) if not d.exists()]  # innermost first
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"data.root: cannot make {raw_dir} for the download ({e.strerror}); give a folder you can write to"
        ) from None
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=raw_dir.parent))
    try:
        spec.torchvision_class()(root=str(scratch), train=True, download=True)
        fetched = scratch / spec.folder / "raw"
        for split in SPLITS:
            load_split(fetched, spec, split)  # refuse anything that fails the checks
        for name in spec.md5:
            (fetched / name).replace(raw_dir / name)
    except DataError:
        raise
    except Exception as e:  # network and mirror errors come in many types
        package = f" (or install the system package {spec.system_package})" if spec.system_package else ""
        raise DataError(
            f"download of {spec.folder} into {raw_dir} failed: {one_line(e, 400)}; check the network, "
            f"or put the files in data.root{package} and set data.download=false"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in made:  # innermost first, so a landed download (raw_dir holds its files) keeps them all
            try:
                folder.rmdir()  # only while empty
            except OSError:
                break


def load_dataset(name: str, root: str | Path, download: bool) -> tuple[Split, Split]:
    """The (train, test) splits of a data set, from root, a system copy, or a fresh download."""
    spec, raw_dir = DATASETS[name], Path(root) / DATASETS[name].folder / "raw"
    folder = find_files(name, root, download)
    if folder is None:
        _download(spec, raw_dir)
        folder = raw_dir
    return load_split(folder, spec, "train"), load_split(folder, spec, "test")


def find_files(name: str, root: str | Path, download: bool) -> Path | None:
    """The folder holding a data set's files (under root, else a system copy); None when a download is to fetch
    them, DataError naming the fixes when none is allowed. Loads nothing, so the command checks it before a sweep."""
    spec = DATASETS[name]
    tried = [Path(root) / spec.folder / "raw", *map(Path, spec.system_dirs)]
    folder = next((f for f in tried if all(_file(f, name) for name in spec.md5)), None)
    if folder is None and not download:
        package = (
            f", or install the system package (apt-get install {spec.system_package})" if spec.system_package else ""
        )
        raise DataError(
            f"{name}: files not found in {', '.join(map(str, tried))}; "
            f"fixes: set data.download=true, or point data.root at a folder holding {spec.folder}/raw/{package}"
        )
    return folder


VAL_SEED = 20_251  # the split's own seed: every run and seed of a sweep holds out the same examples


def load_splits(
    name: str,
    root: str,
    download: bool,
    val_size: int,
    limit_train: int | None,
    limit_test: int | None,
    device: torch.device,
) -> tuple[Split, Split | None, Split]:
    """A run's train, validation (None without a split: `val_size` 0) and test examples, checked, sliced and on its
    device; loaded once per process."""
    if val_size >= DATASETS[name].counts["train"]:
        raise ConfigError(
            f"data.val_size={val_size} is not allowed: expected fewer than the "
            f"{DATASETS[name].counts['train']} training examples of {name}"
        )
    return _load_splits(name, root, download, val_size, limit_train, limit_test, device)


@functools.lru_cache(maxsize=2)
def _load_splits(name, root, download, val_size, limit_train, limit_test, device) -> tuple[Split, Split | None, Split]:
    train_set, test_set = load_dataset(name, root, download)
    val_set = None
    if val_size:
        train_set, val_set = train_set.hold_out(val_size, VAL_SEED)
    return train_set.head(limit_train).to(device), val_set and val_set.to(device), test_set.head(limit_test).to(device)


def to_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1], as torchvision's ToTensor scales."""
    import torch

    x = images.unsqueeze(1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
