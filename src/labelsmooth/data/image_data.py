"""The data module shared by every image data set: splits, the in-memory fast path, on-device preprocessing.

A data set is one small subclass that opens its splits (usually through torchvision's own class) and says
which files it expects. This base class then

* carves the missing validation split (and, where a data set has none, the test split) out of the training
  split with a fixed seed (``split_seed``, independent of the run's seed); the test split is never used for
  model selection;
* decodes data sets that fit in memory (``in_memory=true``) once into one uint8 tensor and serves batches
  by batch-level indexing (``__getitems__``), with no worker processes; the others stream through
  DataLoader workers, which only decode and resize to uint8;
* converts, normalises and augments whole batches on the training device, in the LightningDataModule's
  ``on_after_batch_transfer`` hook (see ``preprocess.BatchPreprocessor``);
* computes the training split's pixel statistics once and caches them next to the data (atomic write; where
  the cache cannot be written, e.g. on a read-only data mount, it warns and goes on without it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from labelsmooth.data.base import ClassificationDataModule, image_channels
from labelsmooth.data.in_memory import InMemoryImages, already_batched, dataset_targets, decode_all, decode_transform
from labelsmooth.data.preprocess import BatchPreprocessor, process_epoch_seed
from labelsmooth.data.splits import carve_splits, check_split_size
from labelsmooth.errors import SEED_RANGE, ConfigurationError, LabelsmoothError, describe, first_line, whole_number

SPLITS = ("train", "val", "test")
#: What ``val_size=0`` means: no validation split, the test split validates (Mezzini's protocol).
VALIDATION_ON_TEST = "validate on the test split"

log = logging.getLogger(__name__)


class DatasetNotFoundError(LabelsmoothError, FileNotFoundError):
    """The data set's files are absent (and were not or could not be downloaded); the message says what to put
    where and where to get it."""


class DatasetUnreadableError(LabelsmoothError, ValueError):
    """The data set's files are present but cannot be read (truncated, garbled, another format)."""


def looks_missing(error: BaseException) -> bool:
    """Whether opening a split failed because files are absent (torchvision's "Dataset not found ... use
    download=True", a missing file or folder) rather than unreadable."""
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        phrase in text for phrase in ("not found", "not present", "download=true", "does not exist")
    )


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file of this process beside ``path``, renamed over it: readers see the whole
    file or none. Made by ``open()``, so others may read it as they may read the data (``mkstemp`` makes 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as handle:
            torch.save(obj, handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class ImageDataModule(ClassificationDataModule):
    """Base of the image data sets. Subclasses set ``name``, ``expected_files``, ``source`` and implement
    ``open_split(split, transform, download)`` returning a Dataset of ``(uint8 tensor, label)`` for
    ``"train"``, ``"val"``, ``"test"``, or ``None`` where the data set has no such split (then it is carved
    from the training split: ``val_size``, ``test_size``, fractions or counts, seed ``split_seed``).
    A data set that torchvision cannot download sets ``downloadable = False``: ``download`` is then ignored
    and the error for missing files says where to get them by hand (``where_to_get``), with no download advice.
    """

    name: str = "image data set"
    expected_files: str = ""
    source: str = ""
    downloadable: bool = True
    num_classes: int | None = None
    official_val_split: bool = False  # an official validation split that ``trainval`` can train on

    def __init__(
        self,
        root: str | os.PathLike | None,
        image_size: int,
        channels: int,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_size: float | int = 0.1,
        test_size: float | int = 0.1,
        split_seed: int = 0,
        in_memory: bool = True,
        download: bool = True,
        input_range: Sequence[float] = (0.0, 1.0),
        normalize: str = "none",
        shift: float = 0.0,
        hflip: bool = False,
        num_classes: int | None = None,
        trainval: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        self._seeded_epoch: int | None = None  # the training epoch whose draws this DDP process has seeded
        fixed = type(self).num_classes  # a data set of known classes: another count would train another head
        if num_classes is not None and fixed is not None and num_classes != fixed:
            raise ConfigurationError(f"dataset.num_classes={num_classes}: {type(self).__name__} has {fixed} classes")
        if num_classes is not None:  # declared by the config; checked against the labels in setup
            self.num_classes = int(num_classes)
        self.root = Path(root).expanduser() if root is not None else None
        size = whole_number("dataset.image_size", image_size, 1, "pixels")
        self.image_shape = (image_channels(channels), size, size)
        self.val_size = check_split_size("dataset.val_size", val_size, none_means=VALIDATION_ON_TEST)
        self.test_size = check_split_size("dataset.test_size", test_size)
        low, high = SEED_RANGE
        self.split_seed = whole_number("dataset.split_seed", split_seed, low, "the split's seed", maximum=high)
        self.in_memory = bool(in_memory)
        self.download = bool(download) and self.downloadable
        self.preprocessor = BatchPreprocessor(input_range, normalize, shift, hflip)
        if trainval and not self.official_val_split:
            raise ConfigurationError(f"dataset.trainval=true: {self.name} has no official validation split to train on")
        self.trainval = bool(trainval)  # train on the official train and val splits together; val carved from them

    # ---- what a data set provides -------------------------------------------------------------------
    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        raise NotImplementedError

    def fast_arrays(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The split as uint8 ``(N, C, H, W)`` and labels without decoding image by image, where the data set
        already stores arrays of the configured size (MNIST, CIFAR, SVHN); ``None`` to decode."""
        return None

    def cache_key(self) -> dict[str, Any]:
        """What identifies this data set's files besides its class (e.g. a domain or a subset)."""
        return {}

    def carve_groups(self, train: Dataset) -> torch.Tensor | None:
        """A group id per training sample, where samples come in groups (frames of one object) that a carved split
        takes whole (``stratified_carve``); ``None``: each sample on its own."""
        return None

    # ---- opening, with a clear error when the files are absent -------------------------------------
    def damaged_files(self) -> list[str]:
        """Files that are present but fail the data set's own integrity check (e.g. torchvision's MD5 sums)."""
        return []

    def where_to_get(self) -> str:
        """The sentence of the missing-files error that says how to obtain them; it offers
        ``dataset.download=true`` only where torchvision can download the data set."""
        advice = f"Get them from {self.source} and put them in {self.root} (set dataset.root or paths.data_dir)"
        if self.downloadable:
            return f"{advice}, or run once with network access and dataset.download=true."
        return f"{advice}. They cannot be fetched automatically."

    def refuse_missing_classes(self, dataset: Any, expected: Iterable[str]) -> Any:
        """``dataset`` (a torchvision folder data set, numbered by the ``wnids`` folders it found), refused when
        some of the data set's ``expected`` class folders are absent: each later class's label would shift."""
        missing = sorted(set(expected) - set(dataset.wnids))
        if missing:
            named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DatasetUnreadableError(
                f"{self.name}: {len(missing)} class folder(s) missing under {self.root}: {named}. The classes are "
                f"numbered from the folders there are, so every later class's label would shift. Restore them "
                f"(from {self.source})"
            )
        return dataset

    def missing_message(self) -> str:
        damaged = self.damaged_files()
        if damaged:
            refetch = ", or run with dataset.download=true" if self.downloadable else ""
            return (
                f"{self.name}: damaged files under {self.root} (checksum mismatch): {', '.join(damaged)}. Delete "
                f"them and put intact copies there (from {self.source}){refetch}."
            )
        where = self.root if self.root is None or self.root.is_absolute() else f"{self.root} ({self.root.absolute()})"
        return (
            f"{self.name}: files missing or unreadable under {where}. Expected there: {self.expected_files}. "
            f"{self.where_to_get()}"
        )

    def unreadable_message(self, error: BaseException) -> str:
        """The error for files that are present but cannot be read (truncated, garbled, another format)."""
        if self.damaged_files():
            return self.missing_message()
        return (
            f"{self.name}: cannot read the files under {self.root} ({describe(error)}): "
            f"a file there is damaged or not in the expected format. Expected there: {self.expected_files}. "
            f"Replace the damaged file with an intact copy from {self.source}."
        )

    def _open(self, split: str, download: bool) -> Dataset | None:
        transform = decode_transform(self.image_shape[1], self.image_shape[0])
        try:
            return self.open_split(split, transform, download=False)
        except (ConfigurationError, DatasetUnreadableError):  # the data set's own words about its settings and files
            raise
        except Exception as error:
            if not looks_missing(error):
                raise DatasetUnreadableError(self.unreadable_message(error)) from error
            missing = error
        if not (download and self.downloadable):  # nothing to try: say what to put where
            raise DatasetNotFoundError(f"{self.missing_message()} ({first_line(missing)})") from missing
        try:
            return self.open_split(split, transform, download=True)
        except Exception as failed:  # no network, a moved URL, a checksum mismatch: say what to do by hand
            raise DatasetNotFoundError(f"{self.missing_message()} (download failed: {first_line(failed)})") from failed

    def prepare_data(self) -> None:
        """Download what is missing (Lightning calls this on one process per node)."""
        for split in filter(self._opened_split, SPLITS):
            self._open(split, download=self.download)

    def _opened_split(self, split: str) -> bool:
        return self.has_own_split(split) or (split == "val" and self.trainval)

    # ---- splits ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        opened = {split: self._open(split, download=False) if self._opened_split(split) else None for split in SPLITS}
        if self.trainval:  # the official val split trains; validation is carved from both (or the test split)
            from labelsmooth.data.in_memory import joined

            opened["train"], opened["val"] = joined(opened["train"], opened["val"]), None
        base_train = opened["train"]
        if base_train is None:
            raise RuntimeError(f"{type(self).__name__}.open_split('train') returned None")
        targets = dataset_targets(base_train)
        for split, dataset in opened.items():  # images and labels read from separate files (MNIST's idx files)
            if dataset is None:
                continue
            labels = len(targets) if dataset is base_train else len(dataset_targets(dataset))
            if labels != len(dataset):
                raise DatasetUnreadableError(
                    f"{self.name}: the {split} files under {self.root} hold {len(dataset)} images but {labels} labels: "
                    f"they are damaged or from different releases. Restore them (from {self.source})"
                )
        missing = [split for split in ("test", "val") if opened[split] is None and self.has_own_split(split)]
        sizes = {split: self.test_size if split == "test" else self.val_size for split in missing}
        groups = self.carve_groups(base_train) if sizes else None
        train_index, carved = carve_splits(targets, sizes, self.split_seed, groups)
        classes = getattr(base_train, "classes", None)
        for split in ("val", "test"):  # a split that numbers only its own class folders shifts every later label
            own = getattr(opened[split], "classes", None)
            if classes is not None and own is not None and list(own) != list(classes):
                missing = ", ".join(str(name) for name in classes if name not in own) or "none"
                raise DatasetUnreadableError(
                    f"{self.name}: the {split} split's classes are not the training split's (missing there: "
                    f"{missing}), so its labels would shift past a missing class. Restore its folders under {self.root}"
                )
        # ImageNet's classes are tuples of synonyms, ("tench", "Tinca tinca"): the first names the class
        names = [str(name[0] if isinstance(name, tuple) else name) for name in classes] if classes is not None else []
        if self.num_classes is None:
            self.num_classes = len(names) or int(targets.max()) + 1
        self.class_names = names if len(names) == self.num_classes else None
        if int(targets.max()) >= self.num_classes or int(targets.min()) < 0:
            raise ConfigurationError(
                f"{self.name}: labels run from {int(targets.min())} to {int(targets.max())}, outside "
                f"0..{self.num_classes - 1} (dataset.num_classes={self.num_classes})"
            )
        self.train_targets = targets[train_index]

        if self.in_memory:
            decoded = {id(base_train): self._decode(base_train)}
            sets = {}
            for split in filter(self.has_own_split, SPLITS):
                source = base_train if split in carved or split == "train" else opened[split]
                if id(source) not in decoded:
                    decoded[id(source)] = self._decode(source)
                images, labels = decoded[id(source)]
                index = train_index if split == "train" else carved.get(split)
                if index is not None:
                    images, labels = images[index], labels[index]
                sets[split] = InMemoryImages(images, labels)
            self.train_set, self.val_set, self.test_set = sets["train"], sets.get("val"), sets["test"]
        else:
            self.train_set = Subset(base_train, train_index.tolist())
            self.val_set = Subset(base_train, carved["val"].tolist()) if "val" in carved else opened["val"]
            self.test_set = Subset(base_train, carved["test"].tolist()) if "test" in carved else opened["test"]
        if not self.has_own_split("val"):
            self.val_set = self.test_set
        if self.preprocessor.needs_statistics:
            self.preprocessor.set_statistics(*self._training_statistics())
        validation = "%d" if self.has_own_split("val") else "%d: the test split (dataset.val_size=0)"
        log.info(
            f"%s: train %d, val {validation}, test %d images",
            self.name, *map(len, (self.train_set, self.val_set, self.test_set)),
        )  # fmt: skip

    def has_own_split(self, split: str) -> bool:
        """Whether ``split`` is a split of its own: all are but ``val`` with ``val_size=0`` (``VALIDATION_ON_TEST``),
        where the test split validates, as in Mezzini (2018), whose best validation accuracy is the best accuracy
        on the split it reports (its Keras recipe validates on CIFAR's test set). The training split is then whole,
        an official validation split goes unused, and the checkpoint, temperature and p of a run are selected on the
        test images, so its numbers are optimistic: they compare with the paper's, not with a run's held-out test."""
        return split != "val" or self.val_size != 0

    def run_record(self) -> dict[str, Any]:
        return {} if self.has_own_split("val") else {"validation_split": "test"}

    def _decode(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = self.fast_arrays(dataset)
        if arrays is not None and tuple(arrays[0].shape[1:]) == self.image_shape:
            return arrays[0].contiguous(), arrays[1].long()
        return decode_all(dataset, self.num_workers)

    # ---- pixel statistics of the training split, cached next to the data ----------------------------
    def _statistics_cache(self) -> Path | None:
        if self.root is None:
            return None
        key = {
            "data_set": type(self).__name__, **self.cache_key(), "image_shape": self.image_shape,
            "val_size": self.val_size, "test_size": self.test_size, "split_seed": self.split_seed,
            "train_samples": len(self.train_set),
        }  # fmt: skip
        if isinstance(self.train_set, InMemoryImages):  # the pixels themselves (~0.2 s for CIFAR's, not stale files')
            key["pixels"] = hashlib.blake2b(self.train_set.images.contiguous().numpy(), digest_size=16).hexdigest()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return self.root / ".labelsmooth_cache" / f"{type(self).__name__}-train-statistics-{digest}.pt"

    def _training_statistics(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        cache = self._statistics_cache()
        if cache is not None and cache.is_file():
            try:
                stored = torch.load(cache, weights_only=True)
                return stored["pixel_sum"], stored["pixel_sq_sum"], int(stored["count"])
            except Exception as failed:  # another user's unreadable file, a damaged one: recomputed, as if absent
                log.warning("%s: cannot read the cached pixel statistics %s (%s); computing them again.",
                            self.name, cache, describe(failed))  # fmt: skip
        pixel_sum = torch.zeros(self.image_shape, dtype=torch.float64)
        pixel_sq_sum = torch.zeros(self.image_shape, dtype=torch.float64)
        if isinstance(self.train_set, InMemoryImages):
            batches = (self.train_set.images[i : i + 4096] for i in range(0, len(self.train_set), 4096))
        else:
            loader = DataLoader(self.train_set, batch_size=256, num_workers=self.num_workers)
            batches = (images for images, _ in loader)
        for images in batches:
            values = images.double()
            pixel_sum += values.sum(0)
            pixel_sq_sum += values.square().sum(0)
        count = len(self.train_set)
        if cache is not None:
            try:
                _save_atomic({"pixel_sum": pixel_sum, "pixel_sq_sum": pixel_sq_sum, "count": count}, cache)
            except (OSError, RuntimeError) as failed:  # read-only data, a file in the way, a full disk (torch.save)
                log.warning(
                    "%s: could not cache the training split's pixel statistics at %s (%s); using them uncached, "
                    "they are recomputed each run.",
                    self.name, cache, failed,
                )  # fmt: skip
        return pixel_sum, pixel_sq_sum, count

    # ---- loaders and on-device preprocessing -----------------------------------------------------------
    def _loader(self, dataset: Dataset | None, shuffle: bool, batch_size: int) -> DataLoader:
        if not isinstance(dataset, InMemoryImages):
            return super()._loader(dataset, shuffle, batch_size)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=self.evaluation_sampler(dataset, shuffle),
            num_workers=0,
            collate_fn=already_batched,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def preprocessing_record(self) -> dict:
        return self.preprocessor.record()

    def preprocess_batch(self, batch: Any, train: bool) -> Any:
        """uint8 images → float network inputs (scaled, normalised; shifted and flipped when ``train``)."""
        images, targets = batch
        if images.dtype == torch.uint8:
            images = self.preprocessor(images, train=train)
        return images, targets

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        training = bool(trainer is not None and trainer.training)
        if training and trainer.world_size > 1 and self._seeded_epoch != trainer.current_epoch:
            self._seeded_epoch = trainer.current_epoch
            torch.manual_seed(process_epoch_seed(trainer.global_rank, trainer.current_epoch))
        return self.preprocess_batch(batch, train=training)
