"""Any class-per-folder image directory (``<dir>/<class>/<image>``), for the user's own data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from labelsmooth.data.image_data import ImageDataModule


class ImageFolderDataModule(ImageDataModule):
    """``train_dir`` is required; ``val_dir`` and ``test_dir`` are optional and, when absent, carved from the
    training images (``val_size``, ``test_size``). Classes are the sub-folder names of ``train_dir``, sorted;
    the other folders must have the same ones."""

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

    def cache_key(self) -> dict[str, Any]:
        return {"dirs": self.dirs}

    def where_to_get(self) -> str:
        return (
            f"Put your own images there: one sub-directory per class under {self.dirs['train']} (dataset.train_dir), "
            "named after the class and holding its images; dataset.val_dir / dataset.test_dir, where given, need "
            "the same class sub-directories."
        )

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import ImageFolder
        from torchvision.datasets.folder import find_classes

        if self.dirs[split] is None:
            return None
        folder = ImageFolder(self.dirs[split], transform=transform)
        if split != "train":
            train_classes = find_classes(self.dirs["train"])[0]
            if folder.classes != train_classes:
                raise ValueError(f"{self.dirs[split]} has classes {folder.classes}, train_dir has {train_classes}")
        return folder
