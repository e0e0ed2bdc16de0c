"""Benchmark 3: images per second of the data path, in-memory + on-device augmentation vs torchvision.

"Ours" is ``labelsmooth.data.image_data``'s in-memory path: one uint8 tensor (``InMemoryImages``), batches
fetched by batch-level indexing (``collate_fn=already_batched``, no workers), then scaled, shifted and
flipped as whole batches by ``BatchPreprocessor`` (what ``on_after_batch_transfer`` does on the training
device). "Baseline" is a torchvision DataLoader over the same uint8 images with the same augmentation per
image: ``v2.RandomCrop(32, padding=3, padding_mode="edge")`` (a shift of up to ~10 % with the edge pixel as
fill, Keras' ``fill_mode='nearest'``), ``v2.RandomHorizontalFlip()``, ``v2.ToDtype(float32, scale=True)``,
default collation, with 0 and with 2 worker processes. One torch thread in the main process. Batch 128,
one pass over 10,000 CIFAR-sized images per timing (synthetic pixels; the values do not change the cost).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from common import BENCH_THREADS, alternate, benchmark_main, median, ratio, use_bench_threads
from synthetic_data import synthetic_images
from torch.utils.data import DataLoader, Dataset

BATCH = 128
SHIFT = 0.1


class AugmentedTensorImages(Dataset):
    """The baseline's data set: uint8 images ``(N, C, H, W)`` with a torchvision transform per image."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.targets[index]


def uint8_images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = synthetic_images(count, 10, (3, 32, 32), seed=0)
    images = (images * 40 + 128).clamp(0, 255).to(torch.uint8)
    return images, targets


def images_per_second(loader: DataLoader, step) -> float:
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        images, _ = step(batch)
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def run(size: str = "full") -> dict[str, Any]:
    from torchvision.transforms import v2

    use_bench_threads()
    count = {"full": 10_000, "quick": 2_000, "smoke": 2 * BATCH}[size]
    repetitions = {"full": 3, "quick": 2, "smoke": 1}[size]
    images, targets = uint8_images(count)
    baseline_transform = v2.Compose(
        [
            v2.RandomCrop(32, padding=round(SHIFT * 32), padding_mode="edge"),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    baseline_set = AugmentedTensorImages(images, targets, baseline_transform)
    rows: list[dict[str, Any]] = []
    try:
        from labelsmooth.data.in_memory import InMemoryImages, already_batched
        from labelsmooth.data.preprocess import BatchPreprocessor
    except ImportError as missing:
        ours_loader = None
        note = f"the in-memory data path is not available in this tree ({missing}); only the baseline was timed"
    else:
        note = ""
        preprocessor = BatchPreprocessor(input_range=(0.0, 1.0), normalize="none", shift=SHIFT, hflip=True)
        ours_loader = DataLoader(
            InMemoryImages(images, targets), batch_size=BATCH, shuffle=True, collate_fn=already_batched
        )

        def ours_step(batch):
            batch_images, batch_targets = batch
            return preprocessor(batch_images, train=True), batch_targets

    for workers in (0,) if size == "smoke" else (0, 2):
        baseline_loader = DataLoader(
            baseline_set, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
        )
        row: dict[str, Any] = {"baseline": f"torchvision DataLoader, {workers} workers", "batch": BATCH}
        images_per_second(baseline_loader, lambda b: b)  # warm-up (and start persistent workers)
        if ours_loader is None:
            row["baseline_img_s"] = median([images_per_second(baseline_loader, lambda b: b) for _ in range(3)])
            rows.append(row)
            continue
        images_per_second(ours_loader, ours_step)
        ours, base = alternate(
            lambda: images_per_second(ours_loader, ours_step),  # noqa: B023 - used within this iteration
            lambda: images_per_second(baseline_loader, lambda b: b),  # noqa: B023
            repetitions,
        )
        row["ours_img_s"] = median(ours)
        row["baseline_img_s"] = median(base)
        row["speedup"] = ratio(row["ours_img_s"], row["baseline_img_s"])
        rows.append(row)
    return {
        "title": f"Data path, images per second at batch {BATCH} (shift {SHIFT} + horizontal flip), CPU",
        "goal": "report (higher is better; speedup = ours / baseline)",
        "images": count,
        "note": note,
        "torch_threads": BENCH_THREADS,
        "rows": rows,
    }


def main() -> None:
    benchmark_main("data", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
