"""The Visual Domain Decathlon (Rebuffi et al. 2017), the ten domains of Mezzini (2018).

Read from the challenge's COCO-style annotation files ``annotations/<domain>_{train,val}.json`` and its
JPEG images (shorter side 72 pixels), whose ``file_name`` entries are relative to ``root``
(``data/<domain>/<split>/<class>/<image>.jpg``). Category ids (e.g. 10001..10100 for aircraft) are mapped
to 0..K-1 in increasing id order. The test annotations are not public, so the official validation set is
the test split here and validation is carved from the training set.

The files are fetched by hand (torchvision has no Decathlon class): the devkit archive unpacks into a
``decathlon-1.0/`` directory holding ``annotations/``; each ``<domain>.tar`` of the data archive is unpacked
into ``decathlon-1.0/data/``. ``root`` is that ``decathlon-1.0/`` directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from labelsmooth.data.image_data import ImageDataModule
from labelsmooth.data.image_folder import load_image
from labelsmooth.errors import ConfigurationError

DOMAINS = (
    "aircraft", "cifar100", "daimlerpedcls", "dtd", "gtsrb", "omniglot", "svhn", "ucf101", "vgg-flowers", "imagenet12",
)  # fmt: skip


class DecathlonImages(Dataset):
    """One split of one domain: ``(transform(image), label)`` with labels 0..K-1."""

    def __init__(self, root: Path, annotation_file: Path, transform: Any = None) -> None:
        with open(annotation_file) as handle:
            try:
                coco = json.load(handle)
                categories = sorted(coco["categories"], key=lambda category: category["id"])
                label_of = {category["id"]: label for label, category in enumerate(categories)}
                notes = coco.get("annotations", [])
                image_label = {note["image_id"]: label_of[note["category_id"]] for note in notes}
                self.classes = [str(category.get("name", category["id"])) for category in categories]
                self._samples = [
                    (str(root / image["file_name"]), image_label[image["id"]])
                    for image in sorted(coco["images"], key=lambda image: image["id"])
                    if image["id"] in image_label
                ]
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(
                    f"{annotation_file} is not a Decathlon (COCO-style) annotation file: {type(error).__name__}: "
                    f"{error}"
                ) from error
        if not self._samples:
            raise RuntimeError(f"{annotation_file} has no labelled images")
        self.transform = transform

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self._samples[index]
        image = load_image(path).convert("RGB")  # a file that cannot be read: one line naming it
        return (self.transform(image) if self.transform else image), label


class DecathlonDataModule(ImageDataModule):
    """One domain of the Visual Domain Decathlon: ``dataset=decathlon dataset.domain=dtd``."""

    name = "Visual Domain Decathlon"
    downloadable = False
    source = (
        "the Visual Domain Decathlon site, https://www.robots.ox.ac.uk/~vgg/decathlon/ (decathlon-1.0-devkit.tar.gz "
        "+ decathlon-1.0-data.tar.gz; imagenet12's images are a separate archive from image-net.org)"
    )

    def __init__(
        self,
        root: str,
        domain: str = "aircraft",
        image_size: int = 72,
        channels: int = 3,
        in_memory: bool | None = None,
        **kwargs: Any,
    ):
        if domain not in DOMAINS:
            raise ConfigurationError(f"dataset.domain={domain!r} is not one of {DOMAINS}")
        if in_memory is None:  # imagenet12's 1.2 M images stream, the other domains fit in memory
            in_memory = domain != "imagenet12"
        super().__init__(root, image_size, channels, in_memory=in_memory, **kwargs)
        self.domain = domain
        self.expected_files = (
            f"annotations/{domain}_train.json, annotations/{domain}_val.json (COCO-style) and the JPEGs they name, "
            f"data/{domain}/..."
        )

    def cache_key(self) -> dict[str, Any]:
        return {"domain": self.domain}

    def where_to_get(self) -> str:
        images = (
            "imagenet12's image archive from image-net.org (decathlon-1.0-data-imagenet.tar)"
            if self.domain == "imagenet12"
            else f"{self.domain}.tar from the data archive"
        )
        return (
            f"Get them from {self.source}. The devkit archive unpacks into a decathlon-1.0/ directory holding "
            f"annotations/; unpack {images} into decathlon-1.0/data/. dataset.root must point at that "
            f"decathlon-1.0/ directory itself (the one holding annotations/ and data/; now {self.root}). "
            "They cannot be fetched automatically."
        )

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        if split == "val":
            return None
        annotation = self.root / "annotations" / f"{self.domain}_{'train' if split == 'train' else 'val'}.json"
        if not annotation.is_file():
            raise FileNotFoundError(f"{annotation} is missing")
        return DecathlonImages(self.root, annotation, transform)
