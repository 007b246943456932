"""Data sets and the membership splits.

One seed fixes disjoint `members`, `non_members` and `reference` index sets drawn from a data
set's training pool; accuracy is measured on the official test split. Images are held in memory
as standardized float tensors (N, C, H, W): the data sets this tool targets are small enough, and
it lets one copy travel through Ray's object store to every trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataError(ValueError):
    """The data cannot be loaded as asked; the message is one line meant for the user."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: its shape, its classes and the default split sizes."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    members: int
    non_members: int
    reference: int
    # Random crop + flip preserves the label only where mirror images are the same class.
    flip: bool


DATASETS: dict[str, DatasetInfo] = {
    # digits: 1797 images; a fixed 360 form the test split, the pool of 1437 is split 500/500/437.
    "digits": DatasetInfo("digits", 1, 8, 10, 500, 500, 437, flip=False),
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 28, 10, 10_000, 10_000, 20_000, flip=False),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 15_000, 15_000, 20_000, flip=True),
    "cifar100": DatasetInfo("cifar100", 3, 32, 100, 15_000, 15_000, 20_000, flip=True),
}

_DIGITS_TEST = 360
_DIGITS_TEST_SEED = 20_200_101  # fixed forever: the digits "official" test split


@dataclass(frozen=True)
class Split:
    """One labelled set: images (N, C, H, W) float32, labels (N,) int64, pool indices (N,)."""

    x: torch.Tensor
    y: torch.Tensor
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray | slice) -> Split:
        """Return the subset at `rows` (positions within this split)."""
        return Split(self.x[rows], self.y[rows], self.indices[rows])


@dataclass(frozen=True)
class Splits:
    """The membership protocol's sets for one data set and seed."""

    info: DatasetInfo
    seed: int
    members: Split
    non_members: Split
    reference: Split
    test: Split


@dataclass(frozen=True)
class Pool:
    """A whole data set: the training pool and the official test split, standardized."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale both by the training pool's per-channel mean and std (images NCHW, float)."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    return (
        torch.from_numpy(((train - mean) / std).astype(np.float32)),
        torch.from_numpy(((test - mean) / std).astype(np.float32)),
    )


def _load_digits() -> Pool:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(_DIGITS_TEST_SEED).permutation(len(y))
    test, train = order[:_DIGITS_TEST], order[_DIGITS_TEST:]
    train_x, test_x = _standardize(x[train], x[test])
    return Pool(
        DATASETS["digits"], train_x, torch.from_numpy(y[train]), test_x, torch.from_numpy(y[test])
    )


def _load_torchvision(name: str, data_root: str | None, download: bool) -> Pool:
    from torchvision import datasets

    if data_root is None:
        raise DataError(f"data set {name!r} needs --data-root DIR (add --download to fetch it)")
    root = Path(data_root).expanduser()
    if not root.is_dir() and not download:
        raise DataError(
            f"data root {str(root)!r} does not exist; create it with the data set in "
            f"torchvision's layout, or pass --download to fetch {name} into it"
        )
    cls = {
        "fashion-mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }[name]
    try:
        if download:
            root.mkdir(parents=True, exist_ok=True)
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as err:
        raise DataError(
            f"data root {str(root)!r} has no {name} in torchvision's layout ({err}); "
            "pass --download to fetch it"
        ) from None

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(ds.data, dtype=np.float32) / 255.0
        if images.ndim == 3:  # grey: (N, H, W)
            images = images[:, None]
        else:  # colour: (N, H, W, C)
            images = images.transpose(0, 3, 1, 2)
        return images, np.asarray(ds.targets, dtype=np.int64)

    (tx, ty), (vx, vy) = arrays(train), arrays(test)
    train_x, test_x = _standardize(tx, vx)
    return Pool(DATASETS[name], train_x, torch.from_numpy(ty), test_x, torch.from_numpy(vy))


def load_pool(name: str, data_root: str | None = None, download: bool = False) -> Pool:
    """Return the whole data set `name`; only torchvision sets need `data_root`.

    Nothing is fetched unless `download` is true. Raises DataError with one clear line when the
    data set is unknown or absent.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; expected one of: {', '.join(DATASETS)}")
    if name == "digits":
        return _load_digits()
    return _load_torchvision(name, data_root, download)


def split_pool(
    pool: Pool,
    seed: int,
    members: int | None = None,
    non_members: int | None = None,
    reference: int | None = None,
) -> Splits:
    """Return disjoint members / non-members / reference sets drawn from the pool by `seed`.

    The same seed gives the same index sets on any machine (numpy's PCG64 permutation).
    """
    info = pool.info
    sizes = (
        members or info.members,
        non_members or info.non_members,
        reference or info.reference,
    )
    available = len(pool.train_y)
    if sum(sizes) > available:
        raise DataError(
            f"members + non_members + reference = {' + '.join(map(str, sizes))} = {sum(sizes)} "
            f"exceeds the {info.name} training pool of {available}"
        )
    order = np.random.default_rng(seed).permutation(available)
    cuts = np.cumsum(sizes)
    parts = np.split(order[: cuts[-1]], cuts[:-1])

    def make(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        tensor_idx = torch.from_numpy(idx)
        return Split(pool.train_x[tensor_idx], pool.train_y[tensor_idx], idx)

    test = Split(pool.test_x, pool.test_y, np.arange(len(pool.test_y)))
    return Splits(info, seed, make(parts[0]), make(parts[1]), make(parts[2]), test)


def load_splits(
    name: str = "digits",
    seed: int = 0,
    *,
    data_root: str | None = None,
    download: bool = False,
    members: int | None = None,
    non_members: int | None = None,
    reference: int | None = None,
) -> Splits:
    """Load data set `name` and return its membership splits for `seed`."""
    pool = load_pool(name, data_root, download)
    return split_pool(pool, seed, members, non_members, reference)
