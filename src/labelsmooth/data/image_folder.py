"""Any class-per-folder image directory (``<dir>/<class>/<image>``), for the user's own data."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from labelsmooth.data.image_data import DatasetUnreadableError, ImageDataModule
from labelsmooth.errors import ConfigurationError, describe

log = logging.getLogger(__name__)

# Folders that tools leave beside the classes (notebooks, version control, macOS archives): never a class.
NOT_CLASSES = ("__MACOSX", "__pycache__")
SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}


def is_hidden(name: str) -> bool:
    """Hidden files and folders (``.git``, ``.ipynb_checkpoints``, macOS's ``._cat.png``), and tools' folders."""
    return name.startswith(".") or name in NOT_CLASSES


def class_folders(directory: str | os.PathLike) -> list[str]:
    """The class sub-folders of ``directory``, sorted, hidden ones left out."""
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not is_hidden(entry.name))


def image_files(folder: Path) -> tuple[list[Path], Counter[str]]:
    """The images under ``folder`` (torchvision's image extensions, any case; hidden files and folders left out),
    sorted, and the other files by extension. Links to folders are followed, except one back to a folder already
    read or above ``folder`` (which would read its images twice, or other classes' images as its own)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    images, others = [], Counter[str]()
    top, walked = os.path.realpath(folder), set()
    for root, directories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in walked or (real != top and Path(top).is_relative_to(real)):  # a link back: a loop, or the classes
            log.warning("%s: left out %s, a link to a folder that holds it or that was read already", folder, root)
            directories[:] = []
            continue
        walked.add(real)
        directories[:] = sorted(d for d in directories if not is_hidden(d))
        for name in sorted(files):
            if is_hidden(name):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMG_EXTENSIONS:
                images.append(Path(root) / name)
            else:
                others[suffix or name] += 1
    return images, others


def load_image(path: str | os.PathLike) -> Any:
    """An image file as a PIL image, with 16-bit grey levels (modes ``I;16`` and ``I``, as 16-bit PNG and TIFF
    open) scaled to 8 bits (``v/257``) rather than clipped to white by the mode conversion; a float image (mode
    ``F``, whose range is unknown) and a file that cannot be read are a ``DatasetUnreadableError`` naming it."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            image.load()
    except Exception as error:
        raise DatasetUnreadableError(f"{path}: cannot read this image ({describe(error)})") from None
    return eight_bit(image, path)


def eight_bit(image: Any, name: Any = "an image") -> Any:
    """A PIL image whose 16-bit grey levels (modes ``I;16``, ``I``) are scaled to 8 bits (``v/257``), as
    ``load_image`` reads files; a float image (mode ``F``) is a ``DatasetUnreadableError``; others as they are."""
    from PIL import Image

    if image.mode == "F":
        raise DatasetUnreadableError(f"{name}: a 32-bit float image (its range is unknown): save it with 8 or 16 bits")
    if not image.mode.startswith("I"):
        return image
    import numpy as np

    levels = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and levels.size and levels.max() <= 255:  # Image.fromarray of an int32 array of 8-bit levels
        warnings.warn(
            f"{name}: a 32-bit integer image (mode I) whose levels are all <= 255 is read as 16-bit (levels / 257, "
            "nearly black); if its levels are 8-bit, convert it first: image.convert('L') or np.uint8",
            stacklevel=2,
        )
    levels = levels / 257.0
    return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8), mode="L")


class ImageFiles(Dataset):
    """``(image, label)`` pairs of the image files ``samples`` (``(path, label)`` pairs), each read by
    ``load_image`` (a damaged file is an error that names it), then ``transform``; ``targets`` without decoding."""

    def __init__(self, samples: list[tuple[Any, int]], transform: Any) -> None:
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return self.transform(load_image(path)), target

    def fingerprint(self) -> str:
        """Each image's path, size and modification time, hashed: what the cached pixel statistics depend on."""
        digest = hashlib.sha256()
        for path, target in self.samples:
            stat = path.stat()
            digest.update(f"{path}\0{target}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


class ClassFolders(ImageFiles):
    """The images of ``<directory>/<class>/...`` for the given ``classes`` (their index is their position); a class
    without a folder has no samples; ``skipped`` counts the other files by suffix."""

    def __init__(self, directory: str | os.PathLike, classes: list[str], transform: Any) -> None:
        samples: list[tuple[Any, int]] = []
        self.skipped: Counter[str] = Counter()
        for index, name in enumerate(classes):
            if (Path(directory) / name).is_dir():
                images, others = image_files(Path(directory) / name)
                samples += [(path, index) for path in images]
                self.skipped += others
        super().__init__(samples, transform)
        self.classes = classes


class ImageFolderDataModule(ImageDataModule):
    """``train_dir`` is required; ``val_dir`` and ``test_dir`` are optional and, when absent, carved from the
    training images (``val_size``, ``test_size``). Classes are the sub-folder names of ``train_dir``, sorted (hidden
    folders left out); a ``val_dir`` or ``test_dir`` holds some or all of them, and no other. Images are the files
    with torchvision's image extensions (any case); the other files are named in a warning and left out."""

    name = "image folder"
    downloadable = False
    source = "your own images"

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        test_dir: str | None = None,
        image_size: int = 32,
        channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(Path(train_dir).parent, image_size, channels, **kwargs)
        self.dirs = {"train": train_dir, "val": val_dir, "test": test_dir}
        self.expected_files = f"{train_dir}/<class>/<image> (and the same layout in val_dir / test_dir if given)"
        self.train_folder: ClassFolders | None = None
        self.train_fingerprint: str | None = None
        self.warned_about: set[str] = set()  # the folders whose other files were named (once: each is opened twice)

    def cache_key(self) -> dict[str, Any]:
        """The folders and a fingerprint of the training images (read once, only where statistics are cached)."""
        if self.train_fingerprint is None and self.train_folder is not None:
            self.train_fingerprint = self.train_folder.fingerprint()
        return {"dirs": self.dirs, "files": self.train_fingerprint or ""}

    def where_to_get(self) -> str:
        return (
            f"Put your own images there: one sub-directory per class under {self.dirs['train']} (dataset.train_dir), "
            "named after the class and holding its images; dataset.val_dir / dataset.test_dir, where given, hold "
            "sub-directories of the same classes."
        )

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        directory = self.dirs[split]
        if directory is None:
            return None
        classes = class_folders(self.dirs["train"])
        if split == "train":
            check_not_a_split_root(directory, classes)
            if len(classes) == 1:
                raise ConfigurationError(
                    f"dataset.train_dir={directory} has one class folder ({classes[0]}): a classifier needs at least "
                    "two, one sub-directory per class"
                )
            if self.num_classes is not None and self.num_classes != len(classes):
                raise ConfigurationError(
                    f"dataset.num_classes={self.num_classes}, but dataset.train_dir={directory} has {len(classes)} "
                    f"class folders ({', '.join(classes)}): leave dataset.num_classes=null to count them"
                )
        else:
            check_split_folder(split, directory, self.dirs["train"])
            unknown = sorted(set(class_folders(directory)) - set(classes))
            if unknown:
                raise ConfigurationError(
                    f"dataset.{split}_dir={directory} has class folders that dataset.train_dir has not: "
                    f"{', '.join(unknown)} (the training classes: {', '.join(classes)})"
                )
        folder = ClassFolders(directory, classes, transform)
        if not folder.samples and split != "train":
            raise ConfigurationError(f"dataset.{split}_dir={directory}: no images in its class folders")
        if not folder.samples:
            raise FileNotFoundError(f"no images under {directory}/<class>/")
        if folder.skipped and directory not in self.warned_about:
            self.warned_about.add(directory)
            counts = ", ".join(f"{count} {suffix}" for suffix, count in sorted(folder.skipped.items()))
            log.warning("%s: left out %s file(s) that are not images of a format torchvision reads", directory, counts)
        if split == "train":
            present = set(folder.targets)
            empty = [name for index, name in enumerate(classes) if index not in present]
            if empty:
                raise ConfigurationError(
                    f"dataset.train_dir={directory}: the class folder(s) {', '.join(empty)} hold no images (remove "
                    "them, or add images)"
                )
            if self.train_folder is None:  # once: prepare_data and setup both open it
                log.info("%s: %d images of %d classes (%s)", directory, len(folder), len(classes), ", ".join(classes))
            self.train_folder = folder
        return folder


def check_split_folder(split: str, directory: str, train_dir: str) -> None:
    """Refuse a ``val_dir`` / ``test_dir`` that is no directory, or that is ``train_dir`` (its images would be
    evaluated on the images trained on)."""
    if not os.path.isdir(directory):
        raise ConfigurationError(f"dataset.{split}_dir={directory}: no such directory")
    if os.path.realpath(directory) == os.path.realpath(train_dir):
        raise ConfigurationError(
            f"dataset.{split}_dir={directory} is dataset.train_dir: the run would be evaluated on the images it "
            f"trained on; leave dataset.{split}_dir=null to set apart dataset.{split}_size of the training images"
        )


def check_not_a_split_root(directory: str, classes: list[str]) -> None:
    """Refuse a ``train_dir`` whose "classes" are split folders (``train/``, ``val/``, ``test/`` holding class
    folders): the data set's root given in place of its training split."""
    splits = [name for name in classes if name.lower() in SPLIT_NAMES]
    if (
        len(splits) >= 2
        and "train" in [name.lower() for name in splits]
        and all(class_folders(Path(directory) / name) for name in splits)
    ):
        named = {name.lower(): name for name in splits}
        hint = " ".join(
            f"dataset.{key}_dir={Path(directory) / named[name]}"
            for key, name in (
                ("train", "train"),
                ("val", "val"),
                ("val", "valid"),
                ("val", "validation"),
                ("test", "test"),
            )
            if name in named
        )
        raise ConfigurationError(
            f"dataset.train_dir={directory} holds the split folders {', '.join(splits)}, not classes: give each "
            f"split its folder, {hint}"
        )
