"""Every data set loads through the real code from a tiny copy in its real on-disk format (download off)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch

from labelsmooth.data import DatasetNotFoundError, DatasetUnreadableError, InMemoryImages
from labelsmooth.data.digits import DigitsDataModule
from labelsmooth.data.in_memory import already_batched
from labelsmooth.data.preprocess import BatchPreprocessor, random_shift
from labelsmooth.data.splits import check_split_size, stratified_carve
from tests.conftest import compose_train_config
from tests.datasets_on_disk import WRITERS, relax_checksums, write_image_folder

# data set → (number of classes of the data set, image shape, (train, val, test) sizes of its tiny copy)
EXPECTED = {
    "mnist": (10, (1, 28, 28), (20, 10, 20)),
    "cifar10": (10, (3, 32, 32), (120, 30, 10)),
    "cifar100": (100, (3, 32, 32), (100, 100, 100)),
    "svhn": (10, (3, 32, 32), (20, 10, 10)),
    "gtsrb": (43, (3, 32, 32), (86, 43, 7)),
    "dtd": (47, (3, 72, 72), (6, 3, 3)),
    "aircraft": (3, (3, 72, 72), (6, 3, 3)),
    "flowers102": (102, (3, 72, 72), (6, 3, 3)),
    "omniglot": (4, (1, 105, 105), (8, 4, 4)),
    "imagenet": (1000, (3, 72, 72), (6, 3, 3)),
    "imagenette": (10, (3, 128, 128), (20, 10, 10)),
    "decathlon": (3, (3, 72, 72), (6, 3, 3)),
    "image_folder": (3, (3, 32, 32), (6, 3, 3)),
}


def build(name: str, root: Path, **overrides):
    """The data module as ``python train.py dataset=<name>`` builds it, pointed at the tiny copy."""
    location = WRITERS[name](root)
    settings = {"download": False, "num_workers": 0, **location, **overrides}
    cfg = compose_train_config([f"dataset={name}"], output_dir=root)
    return hydra.utils.instantiate(
        cfg.dataset, **{k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_each_data_set_loads_from_its_on_disk_format(name: str, in_memory: bool, tmp_path: Path, monkeypatch) -> None:
    relax_checksums(monkeypatch)
    num_classes, shape, sizes = EXPECTED[name]
    data = build(name, tmp_path, in_memory=in_memory, batch_size=4)
    data.prepare_data()
    data.setup("fit")
    assert data.num_classes == num_classes
    assert data.image_shape == shape and data.in_channels == shape[0] and data.image_size == shape[1:]
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == sizes
    assert data.class_frequencies.shape == (num_classes,)
    assert data.class_frequencies.sum().item() == pytest.approx(1.0)
    images, targets = next(iter(data.train_dataloader()))
    assert images.dtype == torch.uint8 and tuple(images.shape) == (4, *shape)
    assert targets.dtype == torch.long and int(targets.max()) < num_classes
    inputs, _ = data.on_after_batch_transfer((images, targets), 0)
    assert inputs.dtype == torch.float32 and inputs.min() >= 0.0 and inputs.max() <= 1.0
    test_images, test_targets = next(iter(data.test_dataloader()))
    assert tuple(test_images.shape[1:]) == shape and int(test_targets.max()) < num_classes
    if in_memory:  # the writers make class k brighter than class 0: labels travel with their images
        train = data.train_set
        brightness = [train.images[train.targets == k].float().mean() for k in (0, int(train.targets.max()))]
        assert brightness[0] + 10 < brightness[1]


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_aircraft_images_lose_their_copyright_banner(tmp_path: Path, monkeypatch, in_memory: bool) -> None:
    """The 20 white rows at the bottom of black images are gone: the data set's README asks for the banner's
    removal, which torchvision's FGVCAircraft does not do (the banner made the bottom rows of a 72x72 image white)."""
    from PIL import Image

    relax_checksums(monkeypatch)
    data = build("aircraft", tmp_path, in_memory=in_memory, batch_size=12)
    for image in (tmp_path / "fgvc-aircraft-2013b" / "data" / "images").glob("*.jpg"):
        pixels = np.zeros((100, 120, 3), dtype=np.uint8)
        pixels[-20:] = 255  # the banner, from a row that starts JPEG's 16-row blocks: nothing rings above it
        Image.fromarray(pixels).save(image)
    data.prepare_data()
    data.setup("fit")
    for loader in (data.train_dataloader(), data.test_dataloader()):
        images, _ = next(iter(loader))
        assert int(images.max()) < 8


def test_imagenette_classes_are_named_by_their_first_name(tmp_path: Path, monkeypatch) -> None:
    """torchvision names each class with a tuple of synonyms; the confusion matrix showed "('tench', 'Tinca tinca')"."""
    relax_checksums(monkeypatch)
    data = build("imagenette", tmp_path, in_memory=False)
    data.prepare_data()
    data.setup("fit")
    assert data.class_names[0] == "tench" and not any("(" in n or "'" in n for n in data.class_names[:20])


def test_in_memory_and_streaming_give_the_same_pixels(tmp_path: Path, monkeypatch) -> None:
    relax_checksums(monkeypatch)
    batches = []
    for in_memory in (True, False):
        data = build("gtsrb", tmp_path / str(in_memory), in_memory=in_memory, batch_size=200)
        data.setup("fit")
        batches.append(next(iter(data.val_dataloader())))
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])


def test_svhn_label_ten_is_digit_zero_and_decathlon_labels_start_at_zero(tmp_path: Path, monkeypatch) -> None:
    relax_checksums(monkeypatch)
    svhn = build("svhn", tmp_path / "svhn")
    svhn.setup("fit")
    assert sorted(svhn.test_set.targets.tolist()) == list(range(10))
    decathlon = build("decathlon", tmp_path / "decathlon")
    decathlon.setup("fit")
    assert sorted(set(decathlon.train_set.targets.tolist())) == [0, 1, 2]
    assert decathlon.train_dataloader().dataset.images.shape[1:] == (3, 72, 72)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "decathlon", "imagenet"])
def test_missing_files_name_the_files_and_the_directory(name: str, tmp_path: Path) -> None:
    cfg = compose_train_config([f"dataset={name}", f"paths.data_dir={tmp_path / 'empty'}", "dataset.download=false"])
    data = hydra.utils.instantiate(cfg.dataset)
    with pytest.raises(DatasetNotFoundError) as error:
        data.prepare_data()
    message = str(error.value)
    assert str(data.root) in message and data.expected_files in message and data.source in message
    assert ("dataset.download=true" in message) == data.downloadable


def test_missing_files_under_a_relative_directory_say_where_that_is(tmp_path: Path, monkeypatch) -> None:
    """``paths.data_dir`` is ``./data`` by default: a checkpoint evaluated from another working directory looks for
    its data there, so the message names the absolute directory too."""
    monkeypatch.chdir(tmp_path)
    cfg = compose_train_config(["dataset=cifar10", "paths.data_dir=relative", "dataset.download=false"])
    data = hydra.utils.instantiate(cfg.dataset)
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"under relative ({tmp_path / 'relative'}).")):
        data.prepare_data()


# data set → what its missing-files message must say about where to get the files, besides expected_files
NOT_DOWNLOADABLE = {
    "imagenet": ["image-net.org", "registering", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 "ILSVRC2012_devkit_t12.tar.gz"],
    "decathlon": ["robots.ox.ac.uk/~vgg/decathlon", "decathlon-1.0-devkit.tar.gz", "decathlon-1.0-data.tar.gz",
                  "unpacks into a decathlon-1.0/ directory",
                  "dataset.root must point at that decathlon-1.0/ directory"],
    "image_folder": ["one sub-directory per class under {data_dir}/images/train"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NOT_DOWNLOADABLE))
def test_data_sets_torchvision_cannot_download_say_where_to_get_them(name: str, tmp_path: Path) -> None:
    """Even with ``dataset.download=true`` nothing is attempted, and the message gives no download advice."""
    empty = tmp_path / "empty"
    cfg = compose_train_config([f"dataset={name}", f"paths.data_dir={empty}"])
    assert cfg.dataset.download is False  # the config does not promise a download the code cannot do
    data = hydra.utils.instantiate(cfg.dataset, download=True)
    assert data.downloadable is False and data.download is False
    with pytest.raises(DatasetNotFoundError) as error:
        data.prepare_data()
    message = str(error.value)
    assert data.expected_files in message and str(data.root) in message
    for phrase in NOT_DOWNLOADABLE[name]:
        assert phrase.format(data_dir=empty) in message
    assert "dataset.download" not in message and "download failed" not in message and "network" not in message
    assert "Get them from your own images" not in message
    assert not empty.exists()  # nothing was fetched or written


def test_decathlon_root_is_the_directory_its_devkit_unpacks_into(tmp_path: Path) -> None:
    cfg = compose_train_config(["dataset=decathlon", f"paths.data_dir={tmp_path}"])
    assert Path(cfg.dataset.root) == tmp_path / "decathlon-1.0"
    with pytest.raises(DatasetNotFoundError, match="unpack imagenet12's image archive from image-net.org"):
        hydra.utils.instantiate(cfg.dataset, domain="imagenet12").prepare_data()


def test_validation_is_carved_from_train_and_the_test_split_is_untouched(tmp_path: Path) -> None:
    data = build("mnist", tmp_path)
    data.setup("fit")
    train, val = data.train_set, data.val_set
    assert len(train) + len(val) == 30 and len(data.test_set) == 20
    assert not set(map(bytes, train.images.numpy())) & set(map(bytes, val.images.numpy()))
    again = build("mnist", tmp_path / "again")
    again.setup("fit")
    assert torch.equal(again.val_set.images, val.images)  # fixed split seed


def test_stratified_carve_is_fixed_disjoint_and_per_class() -> None:
    targets = torch.arange(10).repeat_interleave(20)
    kept, carved = stratified_carve(targets, 0.1, seed=3)
    assert len(carved) == 20 and torch.bincount(targets[carved]).tolist() == [2] * 10
    assert set(kept.tolist()).isdisjoint(carved.tolist()) and len(kept) + len(carved) == 200
    assert torch.equal(carved, stratified_carve(targets, 0.1, seed=3)[1])
    assert not torch.equal(carved, stratified_carve(targets, 0.1, seed=4)[1])
    assert len(stratified_carve(targets, 50, seed=0)[1]) == 50
    with pytest.raises(ValueError, match="empty split"):
        stratified_carve(torch.arange(10), 0.2, seed=0)


@pytest.mark.parametrize("size", [1.5, 0, -5, 1.0 + 1e-9, True, "abc"])
def test_a_split_size_that_is_neither_a_fraction_nor_a_count_is_refused_before_the_data(size, tmp_path: Path) -> None:
    """``dataset.val_size=1.5`` was read as 1.5 samples (and failed later, as an empty split)."""
    with pytest.raises(ValueError, match=rf"^dataset.val_size={size!r} must be a fraction in \(0, 1\) or a whole"):
        check_split_size("dataset.val_size", size)
    assert check_split_size("dataset.val_size", 300.0) == 300 and check_split_size("dataset.test_size", 0.2) == 0.2
    cfg = compose_train_config(["dataset=cifar10", "dataset.val_size=1.5"], output_dir=tmp_path)
    with pytest.raises(hydra.errors.InstantiationException, match="dataset.val_size=1.5 must be"):
        hydra.utils.instantiate(cfg.dataset, root=str(tmp_path / "absent"))  # refused before the files are looked for


def test_a_split_that_would_be_empty_is_refused_by_its_own_key() -> None:
    """``dataset.test_size=1`` (one sample: no class gives up a rounded share) was reported as ``dataset.val_size``."""
    from labelsmooth.data.splits import carve_splits

    with pytest.raises(ValueError, match=r"^dataset.test_size=1: carving 1 out of 20 samples leaves an empty split"):
        carve_splits(torch.tensor([0, 1] * 10), {"test": 1, "val": 0.25}, seed=0)
    with pytest.raises(ValueError, match=r"^dataset.val_size=0.01: carving 0.01 out of 16 samples leaves an empty"):
        carve_splits(torch.tensor([0, 1] * 10), {"test": 0.2, "val": 0.01}, seed=0)


def test_pixel_mean_is_computed_on_train_and_cached_next_to_the_data(tmp_path: Path, monkeypatch) -> None:
    relax_checksums(monkeypatch)
    data = build("cifar10", tmp_path, normalize="pixel_mean")
    data.setup("fit")
    (cache,) = (tmp_path / ".labelsmooth_cache").glob("CIFAR10DataModule-train-statistics-*.pt")
    expected = data.train_set.images.double().mean(0) / 255.0
    torch.testing.assert_close(data.preprocessor.mean.double(), expected)
    inputs, _ = data.preprocess_batch((data.train_set.images, data.train_set.targets), train=False)
    assert inputs.mean(0).abs().max() < 1e-5  # the training split has zero mean at every pixel
    stored = torch.load(cache, weights_only=True)
    stored["pixel_sum"] *= 0  # a second module reads the cache instead of recomputing
    torch.save(stored, cache)
    again = build("cifar10", tmp_path, normalize="pixel_mean")
    again.setup("fit")
    assert again.preprocessor.mean.abs().max() == 0


def test_the_statistics_cache_is_readable_by_others_and_a_damaged_one_is_computed_again(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """The cache next to a shared data directory: written with the permissions ``open()`` gives (it was 0600, and
    another user's run stopped in a PermissionError from torch.load); one that cannot be read is recomputed."""
    relax_checksums(monkeypatch)
    build("cifar10", tmp_path, normalize="pixel_mean").setup("fit")
    (cache,) = (tmp_path / ".labelsmooth_cache").glob("CIFAR10DataModule-train-statistics-*.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o666 & ~umask
    cache.write_bytes(cache.read_bytes()[:100])
    again = build("cifar10", tmp_path, normalize="pixel_mean")
    with caplog.at_level(logging.WARNING, logger="labelsmooth.data.image_data"):
        again.setup("fit")
    torch.testing.assert_close(again.preprocessor.mean.double(), again.train_set.images.double().mean(0) / 255.0)
    (warning,) = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert f"cannot read the cached pixel statistics {cache}" in warning.getMessage()


def test_an_unwritable_statistics_cache_warns_and_the_run_goes_on(tmp_path: Path, monkeypatch, caplog) -> None:
    """A read-only data mount, or here a plain file where the cache directory would go: a warning, no cache."""
    relax_checksums(monkeypatch)
    data = build("cifar10", tmp_path, normalize="pixel_mean")
    (tmp_path / ".labelsmooth_cache").write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="labelsmooth.data.image_data"):
        data.setup("fit")
    expected = data.train_set.images.double().mean(0) / 255.0
    torch.testing.assert_close(data.preprocessor.mean.double(), expected)
    (warning,) = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert str(tmp_path / ".labelsmooth_cache") in warning.getMessage() and "uncached" in warning.getMessage()
    assert (tmp_path / ".labelsmooth_cache").read_text() == "not a directory"


def test_input_range_is_the_seeds_scaling() -> None:
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    scaled = BatchPreprocessor(input_range=[0.01, 1.0])(images, train=False)
    assert scaled.flatten().tolist() == pytest.approx([0.01, 1.0])


def test_random_shift_is_sub_pixel_per_image_and_fills_with_the_edge() -> None:
    ramp = torch.arange(10.0).view(1, 1, 1, 10).expand(64, 1, 10, 10).contiguous()
    shifted = random_shift(ramp, 0.1, generator=torch.Generator().manual_seed(0))
    offsets = (shifted - ramp)[:, 0, 5, 5]  # the interior of a linear ramp moves by exactly the shift
    assert offsets.abs().max() <= 1.0 + 1e-5 and len(set(offsets.round(decimals=4).tolist())) > 32
    assert ((offsets - offsets.round()).abs() > 1e-3).any()  # sub-pixel
    assert shifted.min() >= 0 and shifted.max() <= 9  # border filled with the nearest edge value, not zeros
    assert torch.equal(random_shift(ramp, 0.0), ramp)


def test_training_batches_are_augmented_evaluation_batches_are_not(tmp_path: Path) -> None:
    data = build("mnist", tmp_path, shift=0.1, hflip=True)
    data.setup("fit")
    batch = (data.train_set.images[:8], data.train_set.targets[:8])
    plain = data.preprocess_batch(batch, train=False)[0]
    assert torch.equal(plain, data.preprocess_batch(batch, train=False)[0])
    assert not torch.equal(plain, data.preprocess_batch(batch, train=True)[0])


def test_in_memory_loader_indexes_whole_batches() -> None:
    calls = []

    class Counting(InMemoryImages):
        def __getitems__(self, indices):
            calls.append(len(indices))
            return super().__getitems__(indices)

    data = Counting(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, collate_fn=already_batched)
    assert [len(y) for _, y in loader] == [4, 4, 2] and calls == [4, 4, 2]


def test_decathlon_streams_imagenet12_and_keeps_the_other_domains_in_memory(tmp_path: Path) -> None:
    from labelsmooth.data import DecathlonDataModule

    assert DecathlonDataModule(str(tmp_path), domain="imagenet12", in_memory=None).in_memory is False
    assert DecathlonDataModule(str(tmp_path), domain="dtd", in_memory=None).in_memory is True
    with pytest.raises(ValueError, match="vgg-flowers"):
        DecathlonDataModule(str(tmp_path), domain="flowers")


def test_a_failed_download_says_what_to_put_where(tmp_path: Path, monkeypatch) -> None:
    """Offline with ``download=true``: each of torchvision's mirrors fails (here without touching the network), and
    torchvision's message of several lines ("Error downloading <file>:", then each mirror's answer) is shortened to
    its first line and the network's last answer."""
    from urllib.error import URLError

    import torchvision.datasets.mnist

    def offline(url: str, **kwargs) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    cfg = compose_train_config(["dataset=mnist", f"paths.data_dir={tmp_path}"])
    data = hydra.utils.instantiate(cfg.dataset)
    with pytest.raises(DatasetNotFoundError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "\n" not in message
    shortened = "(download failed: Error downloading train-images-idx3-ubyte.gz: <urlopen error no network>)"
    assert message.endswith(shortened), message
    assert "MNIST/raw/train-images-idx3-ubyte" in message and str(tmp_path) in message


def test_declared_number_of_classes_is_checked_against_the_labels(tmp_path: Path, monkeypatch) -> None:
    """A data set of known classes refuses another count when it is built (an 11-way head on digits' 10 classes
    trained); one that counts its classes from its files refuses labels beyond the count declared."""
    from labelsmooth.cli.errors import root_cause
    from labelsmooth.errors import ConfigurationError

    with pytest.raises(Exception) as refused:  # Hydra's wrapper of the constructor's error
        build("mnist", tmp_path, num_classes=5)
    cause = root_cause(refused.value)
    assert isinstance(cause, ConfigurationError)
    assert str(cause) == "dataset.num_classes=5: MNISTDataModule has 10 classes"
    relax_checksums(monkeypatch)
    data = build("omniglot", tmp_path, num_classes=2)
    data.prepare_data()
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        data.setup("fit")


@pytest.mark.parametrize(
    "overrides,sizes",
    [([], (1169, 269, 359)), (["dataset.val_size=0.25"], (1079, 359, 359)), (["dataset.test_size=100"], None)],
)
def test_digits_splits_use_the_same_keys_as_every_data_set(tmp_path: Path, overrides, sizes) -> None:
    """`dataset.val_size` / `dataset.test_size` (fraction or count) work on digits as on every data set."""
    cfg = compose_train_config(["dataset=digits", *overrides], output_dir=tmp_path)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.setup("fit")
    datamodule.setup("test")
    loaders = (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader())
    train, val, test = (len(loader.dataset) for loader in loaders)
    assert train + val + test == 1797
    if sizes is not None:
        assert (train, val, test) == sizes
    else:
        assert abs(test - 100) <= 5  # a count, carved per class with rounding


def test_a_garbled_mnist_file_is_reported_as_unreadable_not_missing(tmp_path: Path) -> None:
    from labelsmooth.data import DatasetUnreadableError

    data = build("mnist", tmp_path)  # writes the tiny copy
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(bytes(range(256)) * 4)  # no idx header: torchvision's reader fails an assertion
    with pytest.raises(DatasetUnreadableError, match=r"MNIST: cannot read the files under .*\(AssertionError\)") as e:
        data.prepare_data()
    assert "damaged or not in the expected format" in str(e.value) and "train-labels-idx1-ubyte" in str(e.value)
    data = build("mnist", tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: len(images.read_bytes()) // 2])  # truncated: a wrong size
    with pytest.raises(DatasetUnreadableError, match="cannot read the files") as e:
        data.prepare_data()
    assert "download" not in str(e.value).split("Expected there")[0]
    data = build("mnist", tmp_path)  # valid idx files, one image fewer than labels
    count = int.from_bytes(images.read_bytes()[4:8], "big")
    header = images.read_bytes()[:4] + (count - 1).to_bytes(4, "big") + images.read_bytes()[8:16]
    images.write_bytes(header + images.read_bytes()[16 : 16 + (count - 1) * 28 * 28])
    with pytest.raises(DatasetUnreadableError, match=f"the train files under .* hold {count - 1} images but {count}"):
        data.setup("fit")


@pytest.mark.parametrize("name", ["dtd", "aircraft", "flowers102", "imagenet", "imagenette", "gtsrb", "decathlon"])
@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_a_damaged_image_is_one_error_naming_it(name: str, in_memory: bool, tmp_path: Path, monkeypatch) -> None:
    """A truncated image of a torchvision data set stops the run in one error that names the file, in memory or
    streamed (torchvision's readers said "image file is truncated (27 bytes not processed)", and streamed, late)."""
    from labelsmooth.data import DatasetUnreadableError

    relax_checksums(monkeypatch)
    data = build(name, tmp_path, in_memory=in_memory, batch_size=400)
    image = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".ppm"})[0]
    image.write_bytes(image.read_bytes()[:40])
    with pytest.raises(DatasetUnreadableError, match=re.escape(f"{image}: cannot read this image")):
        data.setup("fit")
        for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader()):
            list(loader)


@pytest.mark.parametrize("name", ["imagenet", "imagenette"])
def test_a_class_folder_missing_from_every_split_is_refused(name: str, tmp_path: Path, monkeypatch) -> None:
    """The classes were numbered from the folders there are: with one absent from train/ and val/ alike (a half
    finished copy), every later class's label shifted and the run trained without a word."""
    from labelsmooth.data import DatasetUnreadableError

    relax_checksums(monkeypatch)
    data = build(name, tmp_path)
    folders = sorted(p for p in tmp_path.rglob("n*") if p.is_dir() and p.parent.name in {"train", "val"})
    wnid = folders[0].name
    for folder in folders:
        if folder.name == wnid:
            shutil.rmtree(folder)
    with pytest.raises(DatasetUnreadableError, match=rf"1 class folder\(s\) missing under .*: {wnid}\. The classes"):
        data.setup("fit")


def test_a_truncated_decathlon_annotation_file_is_named(tmp_path: Path) -> None:
    from labelsmooth.data import DatasetUnreadableError

    data = build("decathlon", tmp_path)
    annotations = tmp_path / "annotations" / "dtd_train.json"
    annotations.write_text(annotations.read_text()[:40])
    with pytest.raises(DatasetUnreadableError, match=r"dtd_train\.json is not a Decathlon \(COCO-style\) annotation"):
        data.prepare_data()


def test_digits_are_read_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits

    from labelsmooth.data.digits import read_digits

    images, targets = read_digits()
    expected = load_digits()
    assert images.shape == (1797, 8, 8) and targets.dtype == np.int64
    np.testing.assert_array_equal(images, expected.images)
    np.testing.assert_array_equal(targets, expected.target)
    assert read_digits()[0] is images and not images.flags.writeable  # read once per process, and kept unchanged


# -- the user's own image folders --------------------------------------------------------------------------------
def _folder_module(train_dir: Path, **settings) -> Any:
    from labelsmooth.data import ImageFolderDataModule

    defaults = {"image_size": 8, "channels": 1, "val_size": 0.25, "test_size": 0.25, "in_memory": True}
    return ImageFolderDataModule(train_dir=str(train_dir), **{**defaults, **settings})


def _png(path: Path, value: int, mode: str = "L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((8, 8), value, dtype=np.uint16 if mode == "I;16" else np.uint8)
    image = Image.fromarray(pixels)  # uint16: mode I;16, as 16-bit PNG and TIFF files hold grey levels
    assert image.mode == mode
    image.save(path)


def test_an_own_image_folder_leaves_out_hidden_folders_and_other_files_and_reads_16_bit_images(
    tmp_path: Path, caplog
) -> None:
    train = tmp_path / "images"
    for label, name in enumerate(("cat", "dog")):
        for i in range(4):
            _png(train / name / f"{i}.PNG", 40 + 100 * label)
    _png(train / "cat" / "deep.png", 257 * 40, mode="I;16")  # 16-bit grey levels: 40 in 8 bits, not white
    _png(train / ".ipynb_checkpoints" / "x.png", 0)  # not a class
    _png(train / "cat" / ".ipynb_checkpoints" / "copy.png", 255)  # not an image of the class
    (train / "cat" / "._0.PNG").write_bytes(b"macOS resource fork")
    (train / "dog" / "notes.txt").write_text("not an image")
    (train / "__MACOSX").mkdir()
    (train / "cat" / "up").symlink_to("..")  # a loop: the classes again, read as cats, over and over
    module = _folder_module(train)
    with caplog.at_level("WARNING"):
        module.prepare_data()
        module.setup("fit")
    assert module.class_names == ["cat", "dog"] and module.num_classes == 2
    assert caplog.text.count("left out 1 .txt file(s)") == 1  # one warning, though the folder is opened again
    assert f"left out {train}/cat/up, a link to a folder that holds it" in caplog.text
    every = torch.cat([module.train_set.images, module.val_set.images, module.test_set.images])
    assert every.shape[0] == 9 and int(every.max()) == 140  # no white image: the 16-bit one reads as 40


def test_an_own_image_folder_refuses_a_split_root_a_wrong_class_count_and_foreign_classes(tmp_path: Path) -> None:
    from labelsmooth.errors import ConfigurationError

    root = tmp_path / "data"
    for split in ("train", "val", "test"):
        for label, name in enumerate(("cat", "dog")):
            for i in range(3):
                _png(root / split / name / f"{i}.png", 10 * label)
    with pytest.raises(ConfigurationError, match=r"holds the split folders test, train, val, not classes: give each"):
        _folder_module(root).setup("fit")
    with pytest.raises(
        ConfigurationError, match=r"^dataset.num_classes=5, but dataset.train_dir=.* has 2 class folders"
    ):
        _folder_module(root / "train", num_classes=5).setup("fit")
    vehicles = tmp_path / "vehicles"  # a class named like a split, with sub-folders: a class all the same
    for name in ("bus", "car", "train"):
        _png(vehicles / name / "sub" / "0.png", 0)
        for i in range(1, 4):
            _png(vehicles / name / f"{i}.png", 0)
    accepted = _folder_module(vehicles)
    accepted.setup("fit")
    assert accepted.class_names == ["bus", "car", "train"]
    shutil.rmtree(root / "val" / "dog")  # a split may lack a class: its labels are the training ones
    module = _folder_module(root / "train", val_dir=str(root / "val"), test_dir=str(root / "test"))
    module.setup("fit")
    assert module.val_set.targets.tolist() == [0, 0, 0] and sorted(set(module.test_set.targets.tolist())) == [0, 1]
    _png(root / "test" / "owl" / "0.png", 0)
    with pytest.raises(ConfigurationError, match=r"^dataset.test_dir=.* has class folders that dataset.train_dir has"):
        _folder_module(root / "train", test_dir=str(root / "test")).setup("fit")
    # a split folder that is absent, empty or the training folder, named as itself (the first two were blamed on
    # dataset.train_dir; the third evaluated the run on the images it trained on)
    with pytest.raises(ConfigurationError, match=rf"^dataset.val_dir={tmp_path}/absent: no such directory$"):
        _folder_module(root / "train", val_dir=str(tmp_path / "absent")).setup("fit")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match=rf"^dataset.test_dir={tmp_path}/empty: no images in its class"):
        _folder_module(root / "train", test_dir=str(tmp_path / "empty")).setup("fit")
    with pytest.raises(ConfigurationError, match=r"^dataset.val_dir=.* is dataset.train_dir: the run would be"):
        _folder_module(root / "train", val_dir=str(root / "train")).setup("fit")
    with pytest.raises(ConfigurationError, match=r"^dataset.train_dir=.* has one class folder \(cat\): a classifier"):
        _folder_module(root / "val").setup("fit")  # its dog folder removed above


def test_an_own_image_folders_cached_statistics_follow_its_files(tmp_path: Path) -> None:
    train = tmp_path / "images"
    for name in ("cat", "dog"):
        for i in range(4):
            _png(train / name / f"{i}.png", 50)
    first = _folder_module(train, normalize="standardize")
    first.setup("fit")
    for path in train.rglob("*.png"):  # the same files, changed in place: the cached statistics must not be reused
        _png(path, 200)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = _folder_module(train, normalize="standardize")
    second.setup("fit")
    assert float(second.preprocessor.mean.mean()) == pytest.approx(200 / 255, abs=1e-6)
    assert float(first.preprocessor.mean.mean()) == pytest.approx(50 / 255, abs=1e-6)


def test_omniglot_numbers_its_characters_whatever_order_the_file_system_lists_them(tmp_path: Path, monkeypatch) -> None:
    """torchvision's Omniglot numbers the characters in ``os.listdir``'s order, which differs between machines (a
    node-local copy, macOS): labels, and the validation and test images carved from them, changed with it."""
    import os

    relax_checksums(monkeypatch)
    first = build("omniglot", tmp_path)
    first.setup("fit")
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": list(reversed(sorted(listdir(path)))))
    second = build("omniglot", tmp_path)
    second.setup("fit")
    assert first.class_names == second.class_names == sorted(first.class_names)
    assert first.class_names[0] == "Alphabet_0/character01"
    for split in ("train_set", "val_set", "test_set"):
        ours, theirs = getattr(first, split), getattr(second, split)
        assert torch.equal(ours.targets, theirs.targets) and torch.equal(ours.images, theirs.images), split


@pytest.mark.parametrize(("name", "removed"), [("imagenette", "val/n01440764"), ("imagenet", "val/n01443537")])
def test_a_class_folder_missing_from_one_split_is_refused_not_shifted(
    name: str, removed: str, tmp_path: Path, monkeypatch
) -> None:
    """The split numbered only the folders it had: every later class took another's label, without a word."""
    import shutil

    relax_checksums(monkeypatch)
    data = build(name, tmp_path)
    (folder,) = tmp_path.glob(f"**/{removed}")
    shutil.rmtree(folder)
    with pytest.raises(DatasetUnreadableError, match=r"the test split's classes are not the training split's"):
        data.setup("fit")


def test_gtsrb_validation_takes_whole_tracks(tmp_path: Path, monkeypatch) -> None:
    """A GTSRB track (~30 frames of one sign) falls in train or in val, never both: validation measures signs the
    network has not seen. Each class keeps a track for training and gives up about its share."""
    from torchvision.datasets.folder import make_dataset

    from tests.datasets_on_disk import write_gtsrb

    relax_checksums(monkeypatch)
    write_gtsrb(tmp_path, per_class=4, classes=43, frames=5)
    cfg = compose_train_config(["dataset=gtsrb", "dataset.val_size=0.3"], output_dir=tmp_path)
    data = hydra.utils.instantiate(cfg.dataset, download=False, num_workers=0, in_memory=False, root=str(tmp_path))
    data.setup("fit")
    files = make_dataset(str(tmp_path / "gtsrb" / "GTSRB" / "Training"), extensions=(".ppm",))
    track = [(label, Path(path).name.split("_")[0]) for path, label in files]
    train_tracks = {track[i] for i in data.train_set.indices}
    val_tracks = {track[i] for i in data.val_set.indices}
    assert not train_tracks & val_tracks
    assert len(data.train_set) + len(data.val_set) == 43 * 4 * 5
    assert {label for label, _ in train_tracks} == set(range(43))
    assert {label for label, _ in val_tracks} == set(range(43))
    assert len(data.val_set) == 43 * 2 * 5  # tracks taken while fewer than round(0.3 · 20) = 6 frames are carved
    kept, carved = data.train_set.indices, data.val_set.indices
    data.train_set = None
    data.setup("fit")  # the same carve every time
    assert (data.train_set.indices, data.val_set.indices) == (kept, carved)


def test_a_gtsrb_training_folder_missing_is_refused_not_shifted(tmp_path: Path, monkeypatch) -> None:
    import shutil

    relax_checksums(monkeypatch)
    data = build("gtsrb", tmp_path)
    shutil.rmtree(tmp_path / "gtsrb" / "GTSRB" / "Training" / "00000")
    with pytest.raises(
        DatasetUnreadableError, match=r"^GTSRB: .*Training lacks the class folders 00000: the labels are counted from"
    ):
        data.setup("fit")


def test_cached_pixel_statistics_follow_the_pixels_not_the_image_counts(tmp_path: Path, monkeypatch) -> None:
    """The cache of the training split's per-pixel mean was keyed by the data set's sizes: files rewritten with the
    same counts kept the old mean (0.19 for 0.78)."""
    import pickle

    relax_checksums(monkeypatch)
    before = build("cifar10", tmp_path, normalize="pixel_mean")
    before.setup("fit")
    for batch in (tmp_path / "cifar-10-batches-py").glob("data_batch_*"):
        entry = pickle.loads(batch.read_bytes())
        entry["data"] = (entry["data"] // 2 + 128).astype(entry["data"].dtype)  # brighter, the same images' count
        batch.write_bytes(pickle.dumps(entry))
    cfg = compose_train_config(["dataset=cifar10"], output_dir=tmp_path).dataset
    settings = {"root": str(tmp_path), "download": False, "val_size": 0.2, "normalize": "pixel_mean"}
    after = hydra.utils.instantiate(cfg, **settings)  # the same files' data set, as a new run opens it
    after.setup("fit")
    expected = after.train_set.images.double().mean(0) / 255
    assert torch.allclose(after.preprocessor.mean.double(), expected, atol=1e-6)
    assert not torch.allclose(before.preprocessor.mean, after.preprocessor.mean)


def test_reading_a_data_set_leaves_the_global_random_state_alone(tmp_path: Path) -> None:
    """An image folder is decoded through a DataLoader, which draws a seed from torch's global generator: the
    network built after the data would start elsewhere than the run's seed (and than a fused member's, whose data
    is read once for the group)."""
    from labelsmooth.cli.build import build_datamodule

    paths = write_image_folder(tmp_path / "images")
    overrides = ["dataset=image_folder", f"dataset.train_dir={paths['train_dir']}", "dataset.num_workers=0"]
    cfg = compose_train_config([*overrides, "dataset.val_size=0.25", "dataset.test_size=0.25"])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    datamodule = build_datamodule(cfg.dataset)
    assert len(datamodule.train_set) == 6 and torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", ["cifar10", "decathlon", "dtd"])
def test_val_size_0_validates_on_the_test_split_and_trains_on_the_whole_training_split(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    """Mezzini's protocol: no validation split is carved (the training split stays whole) and an official one is
    not read; the test split (CIFAR's test set, the Decathlon's official validation set) validates."""
    relax_checksums(monkeypatch)
    carved = build(name, tmp_path / "carved")
    carved.setup("fit")
    data = build(name, tmp_path / "whole", val_size=0)
    opened = []
    original = type(data).open_split

    def recording(self, split, *args, **kwargs):
        opened.append(split)
        return original(self, split, *args, **kwargs)

    monkeypatch.setattr(type(data), "open_split", recording)
    data.setup("fit")
    assert data.val_set is data.test_set and "val" not in opened and data.run_record() == {"validation_split": "test"}
    assert len(data.test_set) == len(carved.test_set) and carved.run_record() == {}
    carved_from_training = 0 if name == "dtd" else len(carved.val_set)  # DTD's official validation split goes unused
    assert len(data.train_set) == len(carved.train_set) + carved_from_training
    with pytest.raises(Exception, match=r"dataset.val_size=-1 must be 0 \(validate on the test split\), a fraction"):
        build(name, tmp_path / "refused", val_size=-1)
    with pytest.raises(ValueError, match=r"^dataset.test_size=0 must be a fraction in \(0, 1\)"):
        DigitsDataModule(test_size=0)


@pytest.mark.parametrize("name", ["dtd", "aircraft", "flowers102"])
@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_trainval_trains_on_the_official_train_and_val_splits(
    name: str, in_memory: bool, tmp_path: Path, monkeypatch
) -> None:
    """Published numbers on these data sets train on both official splits: ``dataset.trainval=true`` joins them and
    carves the validation split from them (here one image per class), or validates on the test split."""
    relax_checksums(monkeypatch)
    official = build(name, tmp_path / "official", in_memory=in_memory)
    official.setup("fit")
    joined = build(name, tmp_path / "joined", in_memory=in_memory, trainval=True, val_size=3)
    joined.setup("fit")
    labelled = len(official.train_set) + len(official.val_set)  # 3 classes × (2 + 1)
    assert (len(joined.train_set), len(joined.val_set), len(joined.test_set)) == (labelled - 3, 3, 3)
    assert joined.class_names == official.class_names and joined.num_classes == official.num_classes
    assert torch.equal(joined.class_frequencies, official.class_frequencies)  # 2 images a class either way
    on_test = build(name, tmp_path / "on_test", in_memory=in_memory, trainval=True, val_size=0)
    on_test.setup("fit")
    assert len(on_test.train_set) == labelled and on_test.run_record() == {"validation_split": "test"}


def test_trainval_on_a_data_set_without_an_official_validation_split_is_refused(tmp_path: Path) -> None:
    from labelsmooth.errors import ConfigurationError

    with pytest.raises(Exception) as refused:  # Hydra's InstantiationException, whose cause the apps report
        build("cifar10", tmp_path, trainval=True)
    assert isinstance(refused.value.__cause__, ConfigurationError)
    assert (
        str(refused.value.__cause__) == "dataset.trainval=true: CIFAR-10 has no official validation split to train on"
    )
