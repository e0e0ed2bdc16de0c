"""Fixed-seed, stratified carving of a validation (or test) split out of a training split."""

from __future__ import annotations

import torch

from labelsmooth.errors import ConfigurationError


def check_split_size(key: str, size: float | int) -> float | int:
    """``size`` if it is a fraction in (0, 1) or a whole number of samples (>= 1), else a ``ConfigurationError``
    naming ``key`` (checked when the data module is built, before any file is read).

    >>> check_split_size("dataset.val_size", 5000), check_split_size("dataset.val_size", 0.1)
    (5000, 0.1)
    """
    number = float(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else float("nan")
    if not (0.0 < number < 1.0 or (number >= 1.0 and number.is_integer())):
        raise ConfigurationError(f"{key}={size!r} must be a fraction in (0, 1) or a whole number of samples (>= 1)")
    return int(number) if number >= 1.0 else number


def stratified_carve(targets: torch.Tensor, size: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(targets))`` into (kept, carved) index tensors, both sorted.

    ``size`` is a fraction in (0, 1) or a number of samples (an int ≥ 1, turned into the fraction
    ``size / len(targets)``). Every class gives up ``round(fraction · n_class)`` of its samples, chosen by a
    ``torch.Generator`` seeded with ``seed``, so the carve is the same in every run and every process.
    Vectorised: one permutation, one stable sort by class, each sample's rank within its class.

    Not ``sklearn.model_selection.train_test_split(stratify=...)``: that rounds the carve as a whole and hands
    the remainder to classes by its own rule, which depends on NumPy's generator, and refuses classes with a
    single sample; here every class gives up its own rounded share from a torch generator, the same on every
    process and platform, and a class too small to give any keeps all its samples.
    """
    targets = torch.as_tensor(targets).long()
    count = len(targets)
    fraction = float(size) if isinstance(size, float) and size < 1 else float(size) / max(count, 1)
    if not 0.0 < fraction < 1.0:
        raise ConfigurationError(f"cannot carve {size!r} samples out of a split of {count}")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(count, generator=generator)
    order = order[torch.sort(targets[order], stable=True).indices]
    sorted_targets = targets[order]
    class_counts = torch.bincount(sorted_targets)
    class_starts = torch.cumsum(class_counts, 0) - class_counts
    rank = torch.arange(count) - class_starts[sorted_targets]
    per_class = torch.round(class_counts.double() * fraction).long()
    carved_mask = rank < per_class[sorted_targets]
    carved = torch.sort(order[carved_mask]).values
    kept = torch.sort(order[~carved_mask]).values
    if len(carved) == 0 or len(kept) == 0:
        raise ConfigurationError(
            f"carving {size!r} out of {count} samples leaves an empty split: use a larger dataset.val_size "
            "(a fraction, or a number of samples)"
        )
    return kept, carved
