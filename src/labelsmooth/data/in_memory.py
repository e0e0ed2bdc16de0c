"""Images and labels as tensors: the in-memory data set and its batched fetch, a data set decoded into one
tensor, and a data set's labels read without decoding its images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset


class InMemoryImages(Dataset):
    """uint8 images ``(N, C, H, W)`` and int64 targets ``(N,)`` held in memory; ``classes``: the classes' names in
    label order, as torchvision's data sets name them, where the data set has names.

    ``__getitems__`` (used by the DataLoader's batched fetch) indexes the whole batch at once; pair it with
    ``collate_fn=already_batched``.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: Sequence[str] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(targets):
            raise ValueError("InMemoryImages takes uint8 images (N, C, H, W) and N targets")
        self.images = images.contiguous()
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        if classes is not None:
            self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.targets[index]


def already_batched(batch: Any) -> Any:
    """The collate function of ``InMemoryImages``: its ``__getitems__`` already returns a batch."""
    return batch


def decode_transform(image_size: int, channels: int):
    """PIL image → uint8 tensor ``(channels, image_size, image_size)``: convert the mode, resize the shorter
    side to ``image_size`` (antialiased) and crop the centre square."""
    from torchvision.transforms import v2

    mode = v2.Grayscale(num_output_channels=1) if channels == 1 else v2.RGB()
    return v2.Compose([mode, v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


def joined(train: Dataset, val: Dataset) -> Dataset:
    """A data set's official training and validation splits as one training set (``dataset.trainval``), with the
    training split's classes (``.classes``: those of the data set, the same in every official split)."""
    both = ConcatDataset([train, val])
    if hasattr(train, "classes"):
        both.classes = list(train.classes)  # type: ignore[attr-defined]
    return both


def dataset_targets(dataset: Dataset) -> torch.Tensor:
    """The labels of a data set of ``(image, label)`` pairs without decoding its images: a torchvision data set,
    a ``TensorDataset(images, labels)``, or a ``Subset`` of one."""
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    if isinstance(dataset, ConcatDataset):
        return torch.cat([dataset_targets(part) for part in dataset.datasets])
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return torch.as_tensor(dataset.tensors[1], dtype=torch.long)
    for attribute in ("targets", "labels", "_labels"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    for attribute in ("_samples", "samples", "_flat_character_images"):
        if hasattr(dataset, attribute):
            return torch.as_tensor([target for _, target in getattr(dataset, attribute)], dtype=torch.long)
    raise TypeError(f"cannot read the labels of {type(dataset).__name__} without decoding it")


def decode_all(dataset: Dataset, num_workers: int, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of ``dataset`` (which yields uint8 tensors of one size) into one tensor."""
    if isinstance(dataset, InMemoryImages):
        return dataset.images, dataset.targets
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    images, targets = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(targets).long()
