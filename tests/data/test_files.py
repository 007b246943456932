"""Data sets from files (raymia.data.files): an .npz and an image folder made here from digits
give digits' splits and row; every malformed input is one line naming the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raymia.data.datasets import _DIGITS_TEST, _FIXED_TEST_SEED, DATASETS, dataset_info, load_splits
from raymia.data.files import default_sizes, file_info, load_file_pool
from raymia.errors import ConfigError, DataError
from raymia.trial.config import parse_trial_config
from raymia.trial.runner import run_trial

#: digits' default split sizes, so that a file copy of digits splits as digits does
DIGITS_SIZES = {"members": 350, "non_members": 350, "held_out": 100, "reference": 637}
FAST = {
    "epochs": 2,
    "dtc": {"enabled": False},
    "attacks": {"n_bootstrap": 0, "n_permutations": 20, "shadow_calibration": False},
}


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return digits' pool and fixed test split as raymia cuts them: (x, y, x_test, y_test),
    images (N, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    order = np.random.default_rng(_FIXED_TEST_SEED).permutation(len(y))
    test, train = order[:_DIGITS_TEST], order[_DIGITS_TEST:]
    return x[train], y[train], x[test], y[test]


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> Path:
    x, y, x_test, y_test = digits_arrays()
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test)
    return path


def write_folder(root: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write images (N, H, W) in [0, 1] as 8-bit grey PNGs, one sub-folder per class."""
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(
            folder / f"{i:05d}.png"
        )


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    x, y, x_test, y_test = digits_arrays()
    root = tmp_path_factory.mktemp("folder") / "digits"
    write_folder(root / "train", x, y)
    write_folder(root / "test", x_test, y_test)
    return root


def test_an_npz_of_digits_splits_and_trains_as_digits(digits_npz):
    info = dataset_info(str(digits_npz))
    assert (info.channels, info.image_size, info.num_classes) == (1, 8, 10)
    mine = load_splits(str(digits_npz), 3, **DIGITS_SIZES)
    theirs = load_splits("digits", 3, **DIGITS_SIZES)
    for name in ("members", "non_members", "held_out", "reference", "test"):
        a, b = getattr(mine, name), getattr(theirs, name)
        assert np.array_equal(a.indices, b.indices), name
        assert np.allclose(a.x.numpy(), b.x.numpy(), atol=1e-6) and a.y.equal(b.y), name
    row = run_trial({"dataset": str(digits_npz), **DIGITS_SIZES, **FAST})
    same = run_trial({"dataset": "digits", **DIGITS_SIZES, **FAST})
    assert row["test_acc"] == pytest.approx(same["test_acc"], abs=1e-9)
    assert row["adv"] == pytest.approx(same["adv"], abs=1e-6)
    assert row["dataset"] == str(digits_npz) and len(row["dataset_sha256"]) == 64
    assert same["dataset_sha256"] is None


def test_an_image_folder_of_digits_gives_digits_splits_and_nearly_its_row(digits_folder):
    info = file_info(str(digits_folder))
    assert (info.channels, info.image_size, info.num_classes) == (1, 8, 10)
    mine = load_splits(str(digits_folder), 0, **DIGITS_SIZES)
    theirs = load_splits("digits", 0, **DIGITS_SIZES)
    # the folder lists images by class, then by name: the same images, in another order
    assert (
        len(mine.test) == _DIGITS_TEST
        and np.bincount(mine.test.y).tolist() == np.bincount(theirs.test.y).tolist()
    )
    row = run_trial({"dataset": str(digits_folder), **DIGITS_SIZES, **FAST})
    same = run_trial({"dataset": "digits", **DIGITS_SIZES, **FAST})
    assert abs(row["test_acc"] - same["test_acc"]) < 0.08  # 8-bit pixels, another draw


def test_the_content_hash_follows_the_content(tmp_path, digits_npz):
    first = load_file_pool(str(digits_npz)).info.sha256
    x, y, x_test, y_test = digits_arrays()
    x[0, 0, 0] += 0.5
    changed = tmp_path / "changed.npz"
    np.savez(changed, x=x, y=y, x_test=x_test, y_test=y_test)
    assert load_file_pool(str(changed)).info.sha256 != first
    assert load_file_pool(str(digits_npz)).info.sha256 == first


def test_without_a_test_split_a_fixed_fifth_is_cut_and_sizes_follow_the_rule(tmp_path):
    x, y, _, _ = digits_arrays()
    path = tmp_path / "no-test.npz"
    np.savez(path, x=(x * 255).astype(np.uint8), y=y)  # uint8 pixels, (N, H, W)
    pool = load_file_pool(str(path))
    assert len(pool.test_y) == round(0.2 * len(y)) and len(pool.train_y) == len(y) - len(
        pool.test_y
    )
    assert (pool.info.members, pool.info.non_members, pool.info.held_out, pool.info.reference) == (
        default_sizes(len(pool.train_y))
    )
    assert default_sizes(1000) == (250, 250, 50, 450)
    again = load_file_pool(str(path))
    assert np.array_equal(again.test_y.numpy(), pool.test_y.numpy())  # fixed, not per seed


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_colour_images_in_either_layout_read_the_same(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    y = np.arange(60) % 3
    path = tmp_path / f"{layout}.npz"
    np.savez(path, x=x if layout == "nhwc" else x.transpose(0, 3, 1, 2), y=y)
    info = file_info(str(path))
    assert (info.channels, info.image_size, info.num_classes) == (3, 12, 3)
    reference = tmp_path / "ref.npz"
    np.savez(reference, x=x, y=y)
    mine, theirs = load_file_pool(str(path)).train_x, load_file_pool(str(reference)).train_x
    assert np.array_equal(mine, theirs)


def test_the_image_size_bounds_follow_the_data(digits_npz):
    with pytest.raises(ConfigError, match="8x8 images"):
        parse_trial_config({"dataset": str(digits_npz), "mechanisms": {"cutout": 5}})
    assert parse_trial_config({"dataset": str(digits_npz), "mechanisms": {"cutout": 4}})


# ---- every bad input is one line naming the file ---------------------------------------------


def bad_npz(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD_X = np.zeros((40, 8, 8), np.float32)
GOOD_Y = np.arange(40) % 4


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"y": GOOD_Y}, "no x array"),
        ({"x": GOOD_X}, "no y array"),
        ({"x": GOOD_X, "y": GOOD_Y[:30]}, "40 images but 30 labels"),
        ({"x": GOOD_X, "y": np.zeros(40, np.int64)}, "a single class"),
        ({"x": GOOD_X, "y": GOOD_Y - 1}, "label -1: expected labels 0..C-1"),
        ({"x": GOOD_X, "y": GOOD_Y * 2}, "never occur: expected labels 0..C-1"),
        ({"x": GOOD_X, "y": GOOD_Y.astype(float)}, "expected integers"),
        ({"x": np.zeros((40, 8, 6)), "y": GOOD_Y}, "8x6: expected square"),
        ({"x": np.zeros((40, 5, 8, 8)), "y": GOOD_Y}, "1 or 3 channels"),
        ({"x": GOOD_X, "y": GOOD_Y, "x_test": GOOD_X}, "x_test and y_test come together"),
        (
            {"x": GOOD_X, "y": GOOD_Y, "x_test": GOOD_X[:0], "y_test": GOOD_Y[:0]},
            "x_test holds no image",
        ),
    ],
)
def test_a_malformed_npz_is_one_line(tmp_path, arrays, expected):
    path = bad_npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=expected) as err:
        file_info(path)
    assert "\n" not in str(err.value) and "bad.npz" in str(err.value)


def test_a_malformed_image_folder_is_one_line(tmp_path):
    root = tmp_path / "images"
    write_folder(root, GOOD_X[:20, :, :], GOOD_Y[:20])
    Image.new("L", (9, 9)).save(root / "class_1" / "odd.png")
    with pytest.raises(DataError, match="9x9 pixels, unlike .*: expected every image the same"):
        file_info(str(root))
    (root / "class_1" / "odd.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="odd.png.*not a readable image"):
        file_info(str(root))
    single = tmp_path / "single"
    write_folder(single, GOOD_X[:10], np.zeros(10, np.int64))
    with pytest.raises(DataError, match="a single class"):
        file_info(str(single))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(DataError, match="expected one sub-folder per class"):
        file_info(str(empty))


def test_too_few_images_for_the_splits_is_one_line(tmp_path):
    path = bad_npz(tmp_path, x=GOOD_X, y=GOOD_Y)
    with pytest.raises(DataError, match="exceeds the .*bad.npz training pool of 32"):
        load_splits(path, 0, members=20, non_members=20)


def test_a_bad_file_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    for arrays in ({"y": GOOD_Y}, {"x": GOOD_X, "y": np.zeros(40, np.int64)}):
        path = bad_npz(tmp_path, **arrays)
        done = subprocess.run(
            [sys.executable, "-m", "raymia.cli", "trial", "--dataset", path],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "bad.npz" in done.stderr
        assert "Traceback" not in done.stderr
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(ConfigError, match="no such file or folder"):
        parse_trial_config({"dataset": str(missing)})
    assert "nowhere" not in DATASETS


@pytest.mark.slow
def test_a_sweep_over_a_file_data_set_loads_it_once(tmp_path, monkeypatch, capsys):
    """The driver loads the file once; then the file goes away, and the trials still run on
    the pool they were handed (a worker never reads it: it need not exist on its node)."""
    from helpers.local_ray import local_ray
    from helpers.sweep_spaces import tiny_space

    import raymia.sweep.run
    from raymia.cli import main
    from raymia.results.rows import load_results

    x, y, x_test, y_test = digits_arrays()
    data = tmp_path / "digits.npz"
    np.savez(data, x=x, y=y, x_test=x_test, y_test=y_test)
    digest = load_file_pool(str(data)).info.sha256
    space = tmp_path / "space.yaml"
    space.write_text(tiny_space(epochs=2).replace("trial:\n", f"trial:\n  dataset: {data}\n"))
    loads = []
    real = raymia.sweep.run.load_pool

    def load_once_then_remove(*args, **kwargs):
        pool = real(*args, **kwargs)
        loads.append(args[0])
        data.rename(tmp_path / "gone.npz")
        return pool

    monkeypatch.setattr(raymia.sweep.run, "load_pool", load_once_then_remove)
    out = tmp_path / "sweep"
    with local_ray(2):
        code = main(["sweep", "--space", str(space), "--out", str(out), "--samples", "2"])
    assert code == 0, capsys.readouterr().err
    df = load_results(out)
    assert len(df) == 2 and (df["status"] == "ok").all(), df.get("error")
    assert loads == [str(data)] and not data.exists()
    assert (df["dataset_sha256"] == digest).all() and (df["dataset"] == str(data)).all()


def test_a_16_bit_image_is_refused_not_clipped(tmp_path):
    root = tmp_path / "deep"
    write_folder(root, GOOD_X[:10], GOOD_Y[:10] % 2)
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(root / "class_0" / "deep.png")
    with pytest.raises(DataError, match="deep.png'?: a I;16 image .* expected 8-bit images") as err:
        file_info(str(root))
    assert "\n" not in str(err.value) and "not a readable" not in str(err.value)


def test_an_image_added_to_a_folder_is_seen_in_the_same_process(tmp_path, monkeypatch):
    import raymia.data.files

    monkeypatch.setattr(raymia.data.files, "SIGNATURE_SECONDS", 0.0)
    root = tmp_path / "growing"
    write_folder(root, GOOD_X[:20], GOOD_Y[:20] % 2)
    before = load_file_pool(str(root))  # remembered by name, as a sweep's driver does
    write_folder(tmp_path / "extra", GOOD_X[:1], np.array([2]))  # a third class, one image
    (tmp_path / "extra" / "class_2").rename(root / "class_2")
    after = file_info(str(root))
    assert (before.info.num_classes, after.num_classes) == (2, 3)
    assert load_file_pool(str(root)).info.sha256 != before.info.sha256
