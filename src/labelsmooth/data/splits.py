"""Fixed-seed, stratified carving of a validation (or test) split out of a training split."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from labelsmooth.errors import ConfigurationError


def check_split_size(key: str, size: float | int, none_means: str | None = None) -> float | int:
    """``size`` if it is a fraction in (0, 1) or a whole number of samples (>= 1), or 0 where ``none_means`` says
    what a split of none stands for, else a ``ConfigurationError`` naming ``key`` (checked when the data module is
    built, before any file is read).

    >>> check_split_size("dataset.val_size", 5000), check_split_size("dataset.val_size", 0.1)
    (5000, 0.1)
    >>> check_split_size("dataset.val_size", 0, none_means="validate on the test split")
    0
    """
    number = float(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else float("nan")
    if number == 0.0 and none_means is not None:
        return 0
    if not (0.0 < number < 1.0 or (number >= 1.0 and number.is_integer())):
        zero = f"0 ({none_means}), " if none_means is not None else ""
        raise ConfigurationError(
            f"{key}={size!r} must be {zero}a fraction in (0, 1) or a whole number of samples (>= 1)"
        )
    return int(number) if number >= 1.0 else number


def stratified_carve(
    targets: torch.Tensor, size: float | int, seed: int, groups: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(targets))`` into (kept, carved) index tensors, both sorted.

    ``size`` is a fraction in (0, 1) or a number of samples (an int ≥ 1, turned into the fraction
    ``size / len(targets)``). Every class gives up ``round(fraction · n_class)`` of its samples, chosen by a
    ``torch.Generator`` seeded with ``seed``, so the carve is the same in every run and every process.
    Vectorised: one permutation, one stable sort by class, each sample's rank within its class.

    Not ``sklearn.model_selection.train_test_split(stratify=...)``: that rounds the carve as a whole and hands
    the remainder to classes by its own rule, which depends on NumPy's generator, and refuses classes with a
    single sample; here every class gives up its own rounded share from a torch generator, the same on every
    process and platform, and a class too small to give any keeps all its samples.

    ``groups`` (a group id per sample, each group within one class: the frames of one object) carves whole groups
    (:func:`grouped_carve`), so no group has samples on both sides.
    """
    targets = torch.as_tensor(targets).long()
    count = len(targets)
    fraction = float(size) if isinstance(size, float) and size < 1 else float(size) / max(count, 1)
    if not 0.0 < fraction < 1.0:
        raise ConfigurationError(f"cannot carve {size!r} samples out of a split of {count}")
    if groups is not None:
        return _check_both_sides(*grouped_carve(targets, torch.as_tensor(groups).long(), fraction, seed), size, count)
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(count, generator=generator)
    order = order[torch.sort(targets[order], stable=True).indices]
    sorted_targets = targets[order]
    class_counts = torch.bincount(sorted_targets)
    class_starts = torch.cumsum(class_counts, 0) - class_counts
    rank = torch.arange(count) - class_starts[sorted_targets]
    per_class = torch.round(class_counts.double() * fraction).long()
    carved_mask = rank < per_class[sorted_targets]
    return _check_both_sides(torch.sort(order[~carved_mask]).values, torch.sort(order[carved_mask]).values, size, count)


def carve_splits(
    targets: torch.Tensor, sizes: Mapping[str, float | int], seed: int, groups: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(training indices, {split: carved indices}): each split of ``sizes`` carved in turn out of what the previous
    ones left of ``range(len(targets))``, by :func:`stratified_carve` with ``seed``, ``seed + 1``, ...

    >>> train, carved = carve_splits(torch.tensor([0, 1] * 10), {"test": 0.2, "val": 0.25}, seed=0)
    >>> len(train), len(carved["test"]), len(carved["val"])
    (12, 4, 4)
    """
    train_index = torch.arange(len(targets))
    carved: dict[str, torch.Tensor] = {}
    for split, size in sizes.items():
        within = None if groups is None else torch.as_tensor(groups)[train_index]
        try:
            kept, chosen = stratified_carve(torch.as_tensor(targets)[train_index], size, seed + len(carved), within)
        except ConfigurationError as error:
            raise ConfigurationError(f"dataset.{split}_size={size!r}: {error}") from None
        carved[split], train_index = train_index[chosen], train_index[kept]
    return train_index, carved


def grouped_carve(
    targets: torch.Tensor, groups: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) sorted sample indices, carving whole groups: each class's groups in an order drawn from
    ``seed``, taken while the class's carved samples are fewer than ``round(fraction · n_class)`` (so at least that
    share, at most one group more), its last group always kept. A group's samples share one class (else a
    ``ValueError``).

    >>> targets, groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), torch.tensor([5, 5, 6, 6, 7, 7, 8, 8])
    >>> kept, carved = grouped_carve(targets, groups, 0.5, seed=0)
    >>> groups[kept].tolist(), groups[carved].tolist()
    ([6, 6, 7, 7], [5, 5, 8, 8])
    """
    unique, member_of = torch.unique(groups, return_inverse=True)
    sizes = torch.bincount(member_of, minlength=len(unique))
    group_class = torch.zeros(len(unique), dtype=torch.long).scatter_(0, member_of, targets)
    if not torch.equal(group_class[member_of], targets):
        raise ValueError("a carve group holds samples of more than one class")
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(int(seed)))
    taken = []
    for label in torch.unique(group_class).tolist():
        ordered = order[group_class[order] == label]
        share = round(fraction * int(sizes[ordered].sum()))
        before = torch.cumsum(sizes[ordered], 0) - sizes[ordered]
        taken.append(ordered[:-1][before[:-1] < share])
    carved_mask = torch.isin(member_of, torch.cat(taken))
    return torch.nonzero(~carved_mask).flatten(), torch.nonzero(carved_mask).flatten()


def _check_both_sides(
    kept: torch.Tensor, carved: torch.Tensor, size: float | int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(carved) == 0 or len(kept) == 0:
        raise ConfigurationError(
            f"carving {size!r} out of {count} samples leaves an empty split (each class gives up its rounded share): "
            "use another size (a fraction, or a number of samples)"
        )
    return kept, carved
