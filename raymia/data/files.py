"""Data sets from files: an image folder or an ``.npz`` of arrays, as a user brings them.

Two layouts, named by path wherever a data set is named (`--dataset PATH`, ``dataset:`` in a
config or a space):

- a folder in torchvision's ``ImageFolder`` layout: one sub-folder per class, PNG / JPEG /
  ... images (torchvision's extensions); with ``train/`` and ``test/`` beside each other, the
  test folder is the fixed test split;
- an ``.npz`` with ``x`` (N,H,W / N,H,W,C / N,C,H,W; uint8 pixels 0-255, or float) and ``y``
  (integer labels 0..C-1), and optionally ``x_test`` and ``y_test``.

Channels (1 or 3), image size (square) and classes are read from the data. Without a test
split, a fixed fifth of the images (drawn once and for all, as for digits) is cut as one. The
default split sizes follow one rule (:func:`default_sizes`): members = non-members = a quarter
of the training pool, held-out a twentieth (at least 10), the reference set the rest. The
images are standardized per channel like the built-in sets. The :class:`DatasetInfo` of a file
carries its resolved path and, once the images are loaded, the SHA-256 of its content (the
``.npz`` file's bytes; the folder's files' relative paths and bytes, in sorted order), which the
trial's row records as `dataset_sha256`.

Every bad input is one line naming the file and what was expected (`DataError`): a missing
path, an ``.npz`` without ``x`` or ``y``, x and y of different lengths, images that are not
square or mix sizes, a single class, labels outside 0..C-1, an unreadable or corrupt image.
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from raymia.errors import DataError, quote

if TYPE_CHECKING:
    from raymia.data.datasets import DatasetInfo, Pool

__all__ = [
    "TEST_FRACTION",
    "default_sizes",
    "file_info",
    "is_file_dataset",
    "load_file_pool",
    "pool_rows",
    "remember",
]

#: Without a test split of its own, this share of a file data set's images is the test split.
TEST_FRACTION = 0.2
#: Folders that make a folder data set's fixed splits.
TRAIN_DIR, TEST_DIR = "train", "test"
_NPZ_KEYS = ("x", "y", "x_test", "y_test")
#: Image modes read as one grey channel; every other 8-bit mode is read as RGB.
_GREY_MODES = frozenset({"1", "L", "LA"})
#: Modes of more than 8 bits a channel, which 8-bit conversion would clip: refused.
_DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _check_depth(mode: str, name: str) -> None:
    """Refuse, in one line, an image whose pixels have more than 8 bits."""
    if mode in _DEEP_MODES:
        raise DataError(
            f"{_show(Path(name))}: a {mode} image (16-bit or float pixels, which 8-bit reading "
            "would clip): expected 8-bit images; store deeper ones in an .npz as floats"
        )


class Description(NamedTuple):
    """What a file data set is, read without decoding its images: channels, the image side,
    the training labels and the test labels (None without a test split of its own)."""

    channels: int
    side: int
    y: np.ndarray
    y_test: np.ndarray | None


def is_file_dataset(name: str) -> bool:
    """Return whether a data set name is a path (an ``.npz`` or a folder), not a built-in."""
    from raymia.data.datasets import DATASETS

    if name in DATASETS:
        return False
    return name.endswith(".npz") or "/" in name or "\\" in name or _exists(name)


def _exists(name: str) -> bool:
    """Return whether a path exists; False for one the system cannot even look up (too long,
    a NUL byte)."""
    try:
        return Path(name).expanduser().exists()
    except (OSError, ValueError):
        return False


def _show(path: Path) -> str:
    return quote(str(path), 160)


#: The split sizes `default_sizes` returns, in its order (DatasetInfo's field names).
SPLIT_SIZES = ("members", "non_members", "held_out", "reference")


def default_sizes(pool: int) -> tuple[int, int, int, int]:
    """Return (members, non-members, held-out, reference) for a training pool of `pool` images:
    a quarter, a quarter, a twentieth (at least 10) and the rest."""
    quarter = pool // 4
    held_out = max(10, pool // 20)
    return quarter, quarter, held_out, max(0, pool - 2 * quarter - held_out)


# ---- reading ---------------------------------------------------------------------------------


def _layout(shape: tuple[int, ...], where: str) -> tuple[bool, int, int]:
    """Return (channels last?, channels, side) of images of `shape`: (N,H,W), (N,H,W,C) or
    (N,C,H,W) with 1 or 3 channels and square images; one line otherwise."""
    if len(shape) == 3:
        last, channels, height, width = False, 1, shape[1], shape[2]
    elif len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3):
        last, channels, height, width = True, shape[3], shape[1], shape[2]
    elif len(shape) == 4 and shape[1] in (1, 3):
        last, channels, height, width = False, shape[1], shape[2], shape[3]
    else:
        raise DataError(
            f"{where}: images of shape {tuple(shape)}: expected (N,H,W), (N,H,W,C) or (N,C,H,W) "
            "with 1 or 3 channels"
        )
    if height != width:
        raise DataError(f"{where}: images are {height}x{width}: expected square images")
    return last, channels, height


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """Return images as float32 (N, C, H, W) from (N,H,W), (N,H,W,C) or (N,C,H,W)."""
    last, _, _ = _layout(x.shape, where)
    # contiguous: the same images give the same standardized values whatever their layout
    x = np.ascontiguousarray(
        x.transpose(0, 3, 1, 2) if last else (x[:, None] if x.ndim == 3 else x)
    )
    if x.dtype == np.uint8:
        return (x / 255.0).astype(np.float32)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{where}: x has dtype {x.dtype}: expected uint8 or float pixels")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: x holds NaN or infinite pixels")
    return x


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    """Return integer labels (N,), after checking their length and type."""
    y = np.asarray(y).reshape(-1) if np.asarray(y).ndim else np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: labels of dtype {y.dtype}: expected integers 0..C-1")
    if len(y) != n:
        raise DataError(f"{where}: {n} images but {len(y)} labels: expected one label per image")
    return y.astype(np.int64)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Return (x, y, x_test, y_test) of an ``.npz`` (None where it has no test split)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {k: data[k] for k in _NPZ_KEYS if k in data.files}
            keys = list(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{_show(path)}: not a readable .npz ({err})") from None
    _check_keys(path, set(found), keys)
    x = _as_nchw(found["x"], f"{_show(path)} x")
    y = _labels(found["y"], len(x), f"{_show(path)} y")
    if "x_test" not in found:
        return x, y, None, None
    if len(found["x_test"]) == 0:
        raise DataError(f"{_show(path)}: x_test holds no image; expected a test split or none")
    x_test = _as_nchw(found["x_test"], f"{_show(path)} x_test")
    y_test = _labels(found["y_test"], len(x_test), f"{_show(path)} y_test")
    if x_test.shape[1:] != x.shape[1:]:
        raise DataError(
            f"{_show(path)}: x_test images are {x_test.shape[1:]}, x images {x.shape[1:]}: "
            "expected the same shape"
        )
    return x, y, x_test, y_test


def _npz_header(path: Path) -> Description:
    """Return an .npz's description reading only its arrays' headers and its labels."""
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as data:
            names = {Path(n).stem: n for n in archive.namelist()}
            keys = list(data.files)
            shapes = {}
            for key in ("x", "x_test"):
                if key in names:
                    with archive.open(names[key]) as member:
                        version = np.lib.format.read_magic(member)
                        read = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shapes[key] = read(member)[0]
            labels = {k: data[k] for k in ("y", "y_test") if k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{_show(path)}: not a readable .npz ({err})") from None
    _check_keys(path, set(shapes) | set(labels), keys)
    _, channels, side = _layout(shapes["x"], f"{_show(path)} x")
    y = _labels(labels["y"], shapes["x"][0], f"{_show(path)} y")
    y_test = None
    if "x_test" in shapes:
        if _layout(shapes["x_test"], f"{_show(path)} x_test")[1:] != (channels, side):
            raise DataError(
                f"{_show(path)}: x_test images {tuple(shapes['x_test'][1:])} unlike x's "
                f"{tuple(shapes['x'][1:])}: expected the same shape"
            )
        if shapes["x_test"][0] == 0:
            raise DataError(f"{_show(path)}: x_test holds no image; expected a test split or none")
        y_test = _labels(labels["y_test"], shapes["x_test"][0], f"{_show(path)} y_test")
    return Description(channels, side, y, y_test)


def _check_keys(path: Path, found: set[str], keys: list[str]) -> None:
    """Refuse an .npz without x or y, or with only one of x_test and y_test."""
    missing = [k for k in ("x", "y") if k not in found]
    if missing:
        raise DataError(
            f"{_show(path)}: no {' or '.join(missing)} array (it holds {', '.join(keys) or 'none'})"
            "; expected x (images) and y (labels), optionally x_test and y_test"
        )
    if ("x_test" in found) != ("y_test" in found):
        raise DataError(f"{_show(path)}: x_test and y_test come together; it holds only one")


def _image_files(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Return the class names and (file, class index) pairs of an ImageFolder root."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, index = find_classes(str(root))
        files = make_dataset(str(root), index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataError(
            f"{_show(root)}: {str(err).splitlines()[0]}; expected one sub-folder per class "
            f"holding images ({', '.join(IMG_EXTENSIONS)})"
        ) from None
    return classes, files


def _folder_files(root: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]] | None]:
    """Return the (file, class index) pairs of a folder data set's training images and of its
    test images (None without a test/ folder), test classes indexed as the training ones."""
    train, test = root / TRAIN_DIR, root / TEST_DIR
    if not train.is_dir():
        return _image_files(root)[1], None
    classes, files = _image_files(train)
    if not test.is_dir():
        return files, None
    test_classes, test_files = _image_files(test)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"{_show(test)}: classes {unknown} are not among {_show(train)}'s")
    index = {name: i for i, name in enumerate(classes)}
    return files, [(name, index[test_classes[c]]) for name, c in test_files]


def _folder_header(root: Path) -> Description:
    """Return a folder data set's description from its images' headers (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    files, test_files = _folder_files(root)
    modes, sizes = set(), {}
    for name, _ in files + (test_files or []):
        try:
            with Image.open(name) as image:
                _check_depth(image.mode, name)
                modes.add("L" if image.mode in _GREY_MODES else "RGB")
                sizes.setdefault(image.size, name)
        except DataError:
            raise
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"{_show(Path(name))}: not a readable image ({err})") from None
        if len(sizes) > 1:
            (first, first_name), (other, other_name) = list(sizes.items())[:2]
            raise DataError(
                f"{_show(Path(other_name))}: {other[0]}x{other[1]} pixels, unlike "
                f"{_show(Path(first_name))}'s {first[0]}x{first[1]}: expected every image the "
                "same size"
            )
    ((width, height),) = sizes
    if width != height:
        raise DataError(f"{_show(root)}: images are {width}x{height}: expected square images")
    y = np.array([c for _, c in files], np.int64)
    y_test = None if test_files is None else np.array([c for _, c in test_files], np.int64)
    return Description(1 if modes == {"L"} else 3, width, y, y_test)


def _read_images(files: list[tuple[str, int]], channels: int) -> np.ndarray:
    """Return the images as float32 (N, C, H, W), grey for 1 channel, else RGB. Sizes,
    squareness and pixel depth were checked on the headers (`_folder_header`); decoding can
    still fail: one line naming the file."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for name, _ in files:
        try:
            with Image.open(name) as image:
                arrays.append(np.asarray(image.convert(mode), dtype=np.uint8))
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"{_show(Path(name))}: not a readable image ({err})") from None
    return _as_nchw(np.stack(arrays), "images")


def _read_folder(
    root: Path, channels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Return (x, y, x_test, y_test) of an ImageFolder root, or of its train/ and test/."""
    files, test_files = _folder_files(root)
    x, y = _read_images(files, channels), np.array([c for _, c in files], np.int64)
    if test_files is None:
        return x, y, None, None
    x_test = _read_images(test_files, channels)
    return x, y, x_test, np.array([c for _, c in test_files], np.int64)


def _check_classes(y: np.ndarray, path: Path) -> int:
    """Return the number of classes C after checking the labels are 0..C-1, C >= 2."""
    if len(y) == 0:
        raise DataError(f"{_show(path)}: no images")
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise DataError(f"{_show(path)}: label {low}: expected labels 0..C-1")
    present = np.unique(y)
    if len(present) < 2:
        raise DataError(f"{_show(path)}: a single class ({low}): expected at least 2 classes")
    if len(present) != high + 1:
        absent = sorted(set(range(high + 1)) - set(present.tolist()))[:5]
        raise DataError(
            f"{_show(path)}: labels run to {high} but {absent} never occur: expected labels "
            "0..C-1, each class present"
        )
    return high + 1


# ---- the data set ----------------------------------------------------------------------------


def _resolve(name: str) -> Path:
    if not _exists(name):
        raise DataError(
            f"dataset = {quote(name, 160)}: no such file or folder; expected a built-in name, "
            "an image folder (one sub-folder per class) or an .npz with x and y"
        )
    path = Path(name).expanduser().resolve()
    if path.is_file() and path.suffix != ".npz":
        raise DataError(f"data set {_show(path)}: expected an image folder or an .npz file")
    return path


#: A folder's signature is kept this many seconds: a config is checked several times as it is
#: read, and a walk of a large folder costs a stat per image.
SIGNATURE_SECONDS = 5.0
_SIGNATURES: dict[str, tuple[float, tuple]] = {}


def _signature(path: Path) -> tuple:
    """Return what identifies a file data set's version: its path and, for the file or every
    file below the folder, its size and modification time (an image added or edited in a
    class folder changes it)."""
    import time

    now = time.monotonic()
    kept = _SIGNATURES.get(str(path))
    if kept is not None and now - kept[0] < SIGNATURE_SECONDS:
        return kept[1]
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamps = [(str(f.relative_to(path)), f.stat().st_mtime_ns, f.stat().st_size) for f in files]
    signature = (str(path), hashlib.sha256(repr(stamps).encode()).hexdigest())
    _SIGNATURES[str(path)] = (now, signature)
    return signature


@functools.lru_cache(maxsize=32)
def _describe(signature: tuple) -> Description:
    path = Path(signature[0])
    return _npz_header(path) if path.is_file() else _folder_header(path)


@functools.lru_cache(maxsize=2)
def _load(signature: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    path = Path(signature[0])
    if path.is_file():
        return _read_npz(path)
    return _read_folder(path, _describe(signature).channels)  # the headers checked first


def _test_count(images: int) -> int:
    """Return how many of a file data set's images form its test split when it has none."""
    return max(1, round(TEST_FRACTION * images))


def _pool_order(images: int, has_test: bool) -> np.ndarray:
    """Return, for each row of the training pool, its position in the file (x's index, or the
    image's place in the folder's sorted listing)."""
    if has_test:
        return np.arange(images)
    from raymia.data.datasets import _FIXED_TEST_SEED

    return np.random.default_rng(_FIXED_TEST_SEED).permutation(images)[_test_count(images) :]


def pool_rows(name: str, identifiers: list[int | str]) -> np.ndarray:
    """Return the training-pool rows of the images a user names: indices into the file's
    ``x`` (or the folder's images in sorted order), or a folder's image paths relative to
    its training folder. Raises DataError (one line) for an unknown name, an index out of
    range, or an image in the test split raymia cut (a fifth of the file, without a test
    split of its own)."""
    path = _resolve(name)
    description = _describe(_signature(path))
    images = len(description.y)
    if any(isinstance(i, str) for i in identifiers):
        if path.is_file():
            raise DataError(f"{_show(path)}: an .npz's members are indices into x, not names")
        files, _ = _folder_files(path)
        root = path / TRAIN_DIR if (path / TRAIN_DIR).is_dir() else path
        place = {str(Path(f).relative_to(root)): k for k, (f, _) in enumerate(files)}
        unknown = [i for i in identifiers if isinstance(i, str) and i not in place]
        if unknown:
            raise DataError(f"{_show(root)}: no image {unknown[0]!r} among its {images} images")
        identifiers = [place[i] if isinstance(i, str) else i for i in identifiers]
    positions = np.asarray(identifiers, dtype=np.int64)
    bad = positions[(positions < 0) | (positions >= images)]
    if len(bad):
        raise DataError(
            f"{_show(path)}: member {int(bad[0])} is not an image index 0..{images - 1}"
        )
    order = _pool_order(images, description.y_test is not None)
    row_of = np.full(images, -1)
    row_of[order] = np.arange(len(order))
    rows = row_of[positions]
    if (rows < 0).any():
        first = int(positions[rows < 0][0])
        raise DataError(
            f"{_show(path)}: member {first} lies in the test split raymia cut from the file (a "
            "fifth of it, as there is no x_test / test folder): give the file a test split"
        )
    return rows


def _split_test(x: np.ndarray, y: np.ndarray, xt, yt) -> tuple[np.ndarray, ...]:
    """Return (train x, train y, test x, test y): the file's own test split, or a fixed fifth
    of the images drawn once and for all."""
    if xt is not None:
        return x, y, xt, yt
    from raymia.data.datasets import _FIXED_TEST_SEED

    order = np.random.default_rng(_FIXED_TEST_SEED).permutation(len(y))
    test, train = order[: _test_count(len(y))], _pool_order(len(y), has_test=False)
    return x[train], y[train], x[test], y[test]


#: Infos handed over with a data set already loaded (a sweep's shared pool), by the name the
#: config gives, with the version they were read from: a trial worker reads nothing from the
#: file, which need not exist on its node; where it does exist and has changed since, the
#: handed info is stale and the file is read again.
_HANDED: dict[str, tuple[DatasetInfo, tuple | None]] = {}


def remember(name: str, info: DatasetInfo) -> None:
    """Make `file_info(name)` return `info` in this process without reading the file (a
    sweep's trial receives the pool the driver loaded), while the file is unchanged."""
    path = Path(info.path) if info.path else None
    version = _signature(path) if path is not None and path.exists() else None
    _HANDED[name] = (info, version)


def _handed(name: str) -> DatasetInfo | None:
    """Return the info handed over for `name`, unless the file here has changed since."""
    if name not in _HANDED:
        return None
    info, version = _HANDED[name]
    path = Path(info.path) if info.path else None
    if path is None or not path.exists() or version == _signature(path):
        return info
    return None


def file_info(name: str) -> DatasetInfo:
    """Return the :class:`raymia.data.datasets.DatasetInfo` of the file data set `name` (its path):
    channels, image size and classes from the data, split sizes by :func:`default_sizes`.
    The images are read once per process and file version (cached). Raises DataError."""
    from raymia.data.datasets import DatasetInfo

    if (handed := _handed(name)) is not None:
        return handed
    path = _resolve(name)
    channels, side, y, y_test = _describe(_signature(path))
    classes = _check_classes(y, path)
    if y_test is not None and len(y_test) and (y_test.min() < 0 or y_test.max() >= classes):
        raise DataError(f"{_show(path)}: test labels outside 0..{classes - 1}")
    pool = len(y) if y_test is not None else len(y) - _test_count(len(y))
    sizes = dict(zip(SPLIT_SIZES, default_sizes(pool), strict=True))
    # flip: a mirror image need not keep its class (digits, text), so it is never assumed
    return DatasetInfo(str(path), channels, side, classes, **sizes, flip=False, path=str(path))


def _content_sha256(path: Path) -> str:
    """Return the SHA-256 of an .npz's bytes, or of a folder's image files' relative paths
    and bytes in sorted order."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_file_pool(name: str) -> Pool:
    """Return the whole file data set `name` as a :class:`raymia.data.datasets.Pool`: standardized
    images, labels, the test split, and an info carrying the content's SHA-256."""
    from raymia.data.datasets import Pool, _standardize

    info = file_info(name)
    path = Path(info.path or name)
    x, y, xt, yt = _split_test(*_load(_signature(path)))
    train_x, test_x = _standardize(x, xt)
    info = replace(info, sha256=_content_sha256(path))
    return Pool(info, train_x, torch.from_numpy(y), test_x, torch.from_numpy(yt))
