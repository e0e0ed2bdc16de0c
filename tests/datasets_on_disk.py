"""Writers of tiny copies of each data set in its real on-disk format, for the real loaders to read.

Every writer puts a few images per class (deterministic random pixels, class-dependent brightness) where
torchvision (or our Decathlon / image-folder reader) expects them, and returns the ``dataset.*`` overrides
that point the data module at them. Where torchvision checks an archive's MD5 against the real files
(CIFAR, SVHN, Flowers-102, Omniglot), the tests relax that check to "the file exists" with
``relax_checksums``; everything else is read exactly as the real data would be.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# All ten: a copy that lacks a class is refused (its labels would shift).
IMAGENETTE_WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
                    "n03425413", "n03445777", "n03888257")  # fmt: skip


def _pixels(rng: np.random.Generator, label: int, shape: tuple[int, ...]) -> np.ndarray:
    base = rng.integers(0, 128, size=shape)
    return np.clip(base + 12 * label, 0, 255).astype(np.uint8)


def _save_image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format of MNIST: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, per_class: int = 3, classes: int = 10) -> dict:
    rng = np.random.default_rng(0)
    for prefix, count in (("train", per_class), ("t10k", 2)):
        labels = np.repeat(np.arange(classes), count)
        images = np.stack([_pixels(rng, label, (28, 28)) for label in labels])
        _write_idx(root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return {"root": root, "val_size": 0.34}


def _cifar_entry(rng: np.random.Generator, labels: np.ndarray, label_key: str) -> dict:
    data = np.stack([_pixels(rng, label, (3, 32, 32)).reshape(-1) for label in labels])
    return {"data": data, label_key: labels.tolist(), "filenames": [f"{i}.png" for i in range(len(labels))]}


def write_cifar10(root: Path, per_class: int = 3) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.repeat(np.arange(10), per_class if name != "test_batch" else 1)
        with open(folder / name, "wb") as handle:
            pickle.dump(_cifar_entry(rng, labels, "labels"), handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    return {"root": root, "val_size": 0.2}


def write_cifar100(root: Path, per_class: int = 2) -> dict:
    rng = np.random.default_rng(2)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", per_class), ("test", 1)):
        labels = np.repeat(np.arange(100), count)
        entry = _cifar_entry(rng, labels, "fine_labels")
        entry["coarse_labels"] = (labels // 5).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)]}, handle)
    return {"root": root, "val_size": 0.5}


def write_svhn(root: Path, per_class: int = 3) -> dict:
    """``X`` of shape (32, 32, 3, N) and ``y`` (N, 1) with digit 0 stored as 10, as in the real .mat files."""
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", per_class), ("test", 1)):
        labels = np.repeat(np.arange(10), count)
        images = np.stack([_pixels(rng, label, (32, 32, 3)) for label in labels], axis=-1)
        savemat(root / f"{split}_32x32.mat", {"X": images, "y": np.where(labels == 0, 10, labels)[:, None]})
    return {"root": root, "val_size": 0.34}


def write_gtsrb(root: Path, per_class: int = 3, classes: int = 43, frames: int = 1) -> dict:
    """``per_class`` tracks of ``frames`` frames each per class, named ``<track>_<frame>.ppm`` as GTSRB's."""
    rng = np.random.default_rng(4)
    base = root / "gtsrb"
    for label in range(classes):
        for i in range(per_class):
            for frame in range(frames):
                _save_image(
                    base / "GTSRB" / "Training" / f"{label:05d}" / f"{i:05d}_{frame:05d}.ppm",
                    _pixels(rng, label, (30 + i + frame, 34, 3)),
                )
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, label in enumerate(range(0, classes, 7)):
        _save_image(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm", _pixels(rng, label, (40, 36, 3)))
        rows.append(f"{i:05d}.ppm;36;40;5;5;31;35;{label}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "val_size": 0.34}


def write_dtd(root: Path, classes: tuple[str, ...] = ("banded", "dotted", "zigzagged")) -> dict:
    rng = np.random.default_rng(5)
    data = root / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        lines = []
        for label, name in enumerate(classes):
            for i in range(count):
                file = f"{name}_{split}_{i:04d}.jpg"
                _save_image(data / "images" / name / file, _pixels(rng, label, (90, 120, 3)))
                lines.append(f"{name}/{file}")
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return {"root": root}


def write_aircraft(root: Path, variants: tuple[str, ...] = ("707-320", "A300B4", "F-16A/B")) -> dict:
    rng = np.random.default_rng(6)
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    image_id = 1000000
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        lines = []
        for label, variant in enumerate(variants):
            for _ in range(count):
                image_id += 1
                _save_image(data / "images" / f"{image_id:07d}.jpg", _pixels(rng, label, (80, 110, 3)))
                lines.append(f"{image_id:07d} {variant}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return {"root": root}


def write_flowers102(root: Path, classes: int = 3) -> dict:
    from scipy.io import savemat

    rng = np.random.default_rng(7)
    base = root / "flowers-102"
    labels, splits = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for label in range(classes):
        for split, count in (("trnid", 2), ("valid", 1), ("tstid", 1)):
            for _ in range(count):
                image_id += 1
                _save_image(base / "jpg" / f"image_{image_id:05d}.jpg", _pixels(rng, label, (100, 80, 3)))
                labels.append(label + 1)
                splits[split].append(image_id)
    savemat(base / "imagelabels.mat", {"labels": np.array(labels)[None, :]})
    savemat(base / "setid.mat", {key: np.array(ids)[None, :] for key, ids in splits.items()})
    return {"root": root}


def write_omniglot(root: Path, alphabets: int = 2, characters: int = 2, drawings: int = 4) -> dict:
    rng = np.random.default_rng(8)
    base = root / "omniglot-py"
    folder = base / "images_background"
    label = 0
    for a in range(alphabets):
        for c in range(characters):
            for d in range(drawings):
                pixels = np.where(_pixels(rng, label, (105, 105)) > 100, 255, 0).astype(np.uint8)
                _save_image(folder / f"Alphabet_{a}" / f"character{c + 1:02d}" / f"{label:04d}_{d + 1:02d}.png", pixels)
            label += 1
    with zipfile.ZipFile(base / "images_background.zip", "w") as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, path.relative_to(base))
    return {"root": root, "val_size": 0.25, "test_size": 0.25}


def _write_wnid_folders(split_root: Path, wnids: tuple[str, ...], count: int, rng: np.random.Generator) -> None:
    for label, wnid in enumerate(wnids):
        for i in range(count):
            _save_image(split_root / wnid / f"{wnid}_{i:05d}.JPEG", _pixels(rng, label, (64, 80, 3)))


def write_imagenet(root: Path, wnids: tuple[str, ...] = ("n01440764", "n01443537", "n01484850")) -> dict:
    """torchvision's unpacked ILSVRC2012 layout: ``meta.bin`` (what ``parse_devkit_archive`` writes: the
    wnid → class names map and the validation images' wnids), ``train/<wnid>/`` and ``val/<wnid>/``."""
    rng = np.random.default_rng(9)
    _write_wnid_folders(root / "train", wnids, 3, rng)
    _write_wnid_folders(root / "val", wnids, 1, rng)
    wnid_to_classes = {wnid: (f"class {i}",) for i, wnid in enumerate(wnids)}
    torch.save((wnid_to_classes, list(wnids)), root / "meta.bin")
    return {"root": root, "val_size": 0.34}


def write_imagenette(root: Path, size: str = "160px") -> dict:
    rng = np.random.default_rng(10)
    base = root / f"imagenette2-{size.removesuffix('px')}" if size != "full" else root / "imagenette2"
    _write_wnid_folders(base / "train", IMAGENETTE_WNIDS, 3, rng)
    _write_wnid_folders(base / "val", IMAGENETTE_WNIDS, 1, rng)
    return {"root": root, "size": size, "val_size": 0.34}


def write_decathlon(root: Path, domain: str = "dtd", classes: int = 3) -> dict:
    """The challenge's COCO-style ``annotations/<domain>_<split>.json`` and 72-pixel JPEGs under ``data/``;
    category ids are offset per domain as in the real files (e.g. 40001.. for dtd)."""
    rng = np.random.default_rng(11)
    offset = 40000
    categories = [{"id": offset + k + 1, "name": f"{domain}-class{k}"} for k in range(classes)]
    image_id = 0
    for split, count in (("train", 3), ("val", 1)):
        images, annotations = [], []
        for k in range(classes):
            for i in range(count):
                image_id += 1
                file_name = f"data/{domain}/{split}/{k + 1:04d}/{image_id:07d}.jpg"
                _save_image(root / file_name, _pixels(rng, k, (72, 72 + 8 * i, 3)))
                images.append({"id": offset * 10 + image_id, "file_name": file_name, "width": 72 + 8 * i, "height": 72})
                annotations.append({"id": image_id, "image_id": offset * 10 + image_id, "category_id": offset + k + 1})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        coco = {"images": images, "annotations": annotations, "categories": categories, "info": {}}
        (root / "annotations" / f"{domain}_{split}.json").write_text(json.dumps(coco))
    return {"root": root, "domain": domain, "val_size": 0.34}


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cats", "dogs", "owls")) -> dict:
    rng = np.random.default_rng(12)
    for label, name in enumerate(classes):
        for i in range(4):
            _save_image(root / "train" / name / f"{i}.png", _pixels(rng, label, (40, 40, 3)))
    return {"train_dir": root / "train", "val_size": 0.25, "test_size": 0.25}


WRITERS = {
    "mnist": write_mnist,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "gtsrb": write_gtsrb,
    "dtd": write_dtd,
    "aircraft": write_aircraft,
    "flowers102": write_flowers102,
    "omniglot": write_omniglot,
    "imagenet": write_imagenet,
    "imagenette": write_imagenette,
    "decathlon": write_decathlon,
    "image_folder": write_image_folder,
}

CHECKSUMMED_MODULES = ("cifar", "svhn", "flowers102", "omniglot")


def relax_checksums(monkeypatch) -> None:
    """torchvision compares some files' MD5 with the real data set's; a tiny copy cannot match, so here the
    check becomes "the file exists" (everything else is read as usual)."""
    import importlib

    for name in CHECKSUMMED_MODULES:
        module = importlib.import_module(f"torchvision.datasets.{name}")
        monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
