"""The study's data sets through torchvision's own classes, one small data module each.

Each says which files it expects under ``root`` (the error message when they are absent repeats it) and
where its splits come from. ``download=true`` lets torchvision fetch what it can when the machine is online;
ImageNet it cannot (``downloadable = False``): its files are fetched by hand, after registration. Image files are
read by ``load_image`` (a ``loader``, or ``ImageFiles`` for GTSRB), so a damaged file is an error that names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from labelsmooth.data.image_data import DatasetUnreadableError, ImageDataModule
from labelsmooth.data.image_folder import ImageFiles, load_image
from labelsmooth.errors import ConfigurationError


class MNISTDataModule(ImageDataModule):
    """MNIST (LeCun et al.): 60,000 training and 10,000 test 28×28 grey digits. Validation carved from train."""

    name = "MNIST"
    num_classes = 10
    expected_files = (
        "MNIST/raw/train-images-idx3-ubyte, MNIST/raw/train-labels-idx1-ubyte, "
        "MNIST/raw/t10k-images-idx3-ubyte, MNIST/raw/t10k-labels-idx1-ubyte (idx files, uncompressed)"
    )
    source = "https://ossci-datasets.s3.amazonaws.com/mnist/ (the torchvision mirror of yann.lecun.com/exdb/mnist)"

    def __init__(self, root: str, image_size: int = 28, channels: int = 1, **kwargs: Any) -> None:
        super().__init__(root, image_size, channels, **kwargs)

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import MNIST

        if split == "val":
            return None
        return MNIST(str(self.root), train=split == "train", transform=transform, download=download)

    def fast_arrays(self, dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        return dataset.data.unsqueeze(1), dataset.targets


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test 32×32 colour images, 10 classes."""

    name = "CIFAR-10"
    num_classes = 10
    expected_files = "cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch, batches.meta} (python pickles)"
    source = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it into root)"

    def __init__(self, root: str, image_size: int = 32, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(root, image_size, channels, **kwargs)

    def _torchvision_class(self):
        from torchvision.datasets import CIFAR10

        return CIFAR10

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        if split == "val":
            return None
        return self._torchvision_class()(str(self.root), train=split == "train", transform=transform, download=download)

    def fast_arrays(self, dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2), torch.as_tensor(dataset.targets)

    def damaged_files(self) -> list[str]:
        from torchvision.datasets.utils import check_integrity

        cls = self._torchvision_class()
        folder = self.root / cls.base_folder
        return [
            str(folder / name)
            for name, md5 in (*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"]))
            if (folder / name).is_file() and not check_integrity(str(folder / name), md5)
        ]


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: as CIFAR-10 with 100 fine classes."""

    name = "CIFAR-100"
    num_classes = 100
    expected_files = "cifar-100-python/{train, test, meta} (python pickles)"
    source = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz (extract it into root)"

    def _torchvision_class(self):
        from torchvision.datasets import CIFAR100

        return CIFAR100


class SVHNDataModule(ImageDataModule):
    """SVHN cropped digits (Netzer et al. 2011): 73,257 training and 26,032 test 32×32 colour images; label
    10 (digit 0) becomes 0. The ``extra`` split is not used."""

    name = "SVHN"
    num_classes = 10
    expected_files = "train_32x32.mat, test_32x32.mat (MATLAB files, format 2)"
    source = "http://ufldl.stanford.edu/housenumbers/"

    def __init__(self, root: str, image_size: int = 32, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(root, image_size, channels, **kwargs)

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import SVHN

        if split == "val":
            return None
        return SVHN(str(self.root), split=split, transform=transform, download=download)

    def fast_arrays(self, dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        return torch.from_numpy(dataset.data), torch.from_numpy(dataset.labels)


class GTSRBDataModule(ImageDataModule):
    """German Traffic Sign Recognition Benchmark: 43 classes, images of 15-250 pixels resized to
    ``image_size``. Validation carved from the training folders by whole tracks: a training file
    ``<class>/<track>_<frame>.ppm`` is one of ~30 frames of one physical sign (Stallkamp et al. 2012), and frames of
    one track on both sides would make validation accuracy measure recall of seen signs."""

    name = "GTSRB"
    num_classes = 43
    expected_files = (
        "gtsrb/GTSRB/Training/<00000..00042>/*.ppm, gtsrb/GTSRB/Final_Test/Images/*.ppm, "
        "gtsrb/GT-final_test.csv (';'-separated, columns Filename;...;ClassId)"
    )
    source = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/published-archive.html"

    def __init__(self, root: str, image_size: int = 32, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(root, image_size, channels, **kwargs)

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import GTSRB

        if split == "val":
            return None
        # torchvision's GTSRB fetches, checks and lists the files, then reads each image itself (it takes no loader)
        listed = GTSRB(str(self.root), split=split, download=download)
        dataset = ImageFiles(listed._samples, transform)
        if split == "train":  # torchvision numbers the folders present: a missing one would shift every later label
            training = Path(str(self.root)) / "gtsrb" / "GTSRB" / "Training"
            present = {entry.name for entry in training.iterdir() if entry.is_dir()}
            if missing := [f"{label:05d}" for label in range(self.num_classes) if f"{label:05d}" not in present]:
                raise DatasetUnreadableError(
                    f"GTSRB: {training} lacks the class folders {', '.join(missing)}: the labels are counted from "
                    "the folders present, so every later class would take another's label. Restore them."
                )
        return dataset

    def carve_groups(self, train: Dataset) -> torch.Tensor:
        """The track of each training image: its class and the ``<track>`` of its file name; a file named
        otherwise is a track of its own."""
        assert isinstance(train, ImageFiles)
        tracks = [(label, path.name.split("_")[0] if "_" in path.name else path) for path, label in train.samples]
        numbers = {track: number for number, track in enumerate(dict.fromkeys(tracks))}
        return torch.tensor([numbers[track] for track in tracks])


class DTDDataModule(ImageDataModule):
    """Describable Textures Dataset: 47 classes, official train/val/test of partition ``partition`` (1-10)."""

    official_val_split = True
    name = "DTD"
    num_classes = 47
    expected_files = "dtd/dtd/images/<class>/*.jpg, dtd/dtd/labels/{train,val,test}<partition>.txt"
    source = "https://www.robots.ox.ac.uk/~vgg/data/dtd/ (extract dtd-r1.0.1.tar.gz into root/dtd)"

    def __init__(
        self,
        root: str,
        image_size: int = 72,
        channels: int = 3,
        partition: Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10] = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, image_size, channels, **kwargs)
        self.partition = int(partition)

    def cache_key(self) -> dict[str, Any]:
        return {"partition": self.partition}

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import DTD

        return DTD(
            str(self.root),
            split=split,
            partition=self.partition,
            transform=transform,
            download=download,
            loader=load_image,
        )


# "Each image has at the bottom a banner 20 pixels high containing copyright information. Please make sure to
# remove this banner when using the images to train and evaluate algorithms." (the data set's README)
AIRCRAFT_BANNER_ROWS = 20


def load_aircraft_image(path: str) -> Any:
    """An FGVC-Aircraft image without the copyright banner of its bottom ``AIRCRAFT_BANNER_ROWS`` rows, which
    torchvision's ``FGVCAircraft`` keeps (its text would be a feature of the images' source, not of the aircraft)."""
    image = load_image(path)
    width, height = image.size
    return image.crop((0, 0, width, height - AIRCRAFT_BANNER_ROWS))


class FGVCAircraftDataModule(ImageDataModule):
    """FGVC-Aircraft 2013b: 100 variants (or 70 families / 30 manufacturers), official train/val/test; the
    copyright banner at the bottom of each image is removed, as the data set's README asks."""

    official_val_split = True
    name = "FGVC-Aircraft"
    expected_files = (
        "fgvc-aircraft-2013b/data/images/*.jpg, fgvc-aircraft-2013b/data/{variants,families,manufacturers}.txt, "
        "fgvc-aircraft-2013b/data/images_<level>_{train,val,test}.txt"
    )
    source = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/ (extract fgvc-aircraft-2013b.tar.gz into root)"

    def __init__(
        self,
        root: str,
        image_size: int = 72,
        channels: int = 3,
        annotation_level: Literal["variant", "family", "manufacturer"] = "variant",
        **kwargs: Any,
    ) -> None:
        super().__init__(root, image_size, channels, **kwargs)
        self.annotation_level = annotation_level

    def cache_key(self) -> dict[str, Any]:
        return {"annotation_level": self.annotation_level, "banner_rows_removed": AIRCRAFT_BANNER_ROWS}

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import FGVCAircraft

        level = self.annotation_level
        return FGVCAircraft(
            str(self.root), split, level, transform=transform, download=download, loader=load_aircraft_image
        )


class Flowers102DataModule(ImageDataModule):
    """Oxford 102 Flowers: 102 classes, official train/val/test (``setid.mat``)."""

    official_val_split = True
    name = "Flowers-102"
    num_classes = 102
    expected_files = "flowers-102/jpg/image_00001.jpg..., flowers-102/imagelabels.mat, flowers-102/setid.mat"
    source = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (102flowers.tgz, imagelabels.mat, setid.mat)"

    def __init__(self, root: str, image_size: int = 72, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(root, image_size, channels, **kwargs)

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import Flowers102

        return Flowers102(str(self.root), split=split, transform=transform, download=download, loader=load_image)


class OmniglotDataModule(ImageDataModule):
    """Omniglot (Lake et al. 2015) as a classification task over the characters of one torchvision subset
    (``background``: 964 characters, else ``evaluation``: 659), 20 drawings each; validation and test are
    carved per character (stratified) from the drawings."""

    name = "Omniglot"
    expected_files = (
        "omniglot-py/images_background.zip (or images_evaluation.zip) and its extracted folder "
        "omniglot-py/images_background/<alphabet>/<character>/*.png"
    )
    source = "https://github.com/brendenlake/omniglot/tree/master/python"

    def __init__(
        self, root: str, image_size: int = 105, channels: int = 1, background: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(root, image_size, channels, **kwargs)
        self.background = bool(background)

    def cache_key(self) -> dict[str, Any]:
        return {"background": self.background}

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import Omniglot

        from labelsmooth.data.image_folder import ClassFolders, class_folders

        if split != "train":
            return None
        # torchvision's Omniglot fetches and checks the files, but numbers the characters in the order the file
        # system lists them (os.listdir), another on another machine: the classes are listed here, sorted.
        folder = Path(Omniglot(str(self.root), background=self.background, download=download).target_folder)
        characters = [
            f"{alphabet}/{character}"
            for alphabet in class_folders(folder)
            for character in class_folders(folder / alphabet)
        ]
        return ClassFolders(folder, characters, transform)


class ImageNetDataModule(ImageDataModule):
    """ILSVRC2012 (1,000 classes) in torchvision's layout. Its test labels are not public, so the official
    validation set is the test split and validation is carved from train. Streams by default. Not
    downloadable: image-net.org gives the archives only to registered users."""

    name = "ImageNet (ILSVRC2012)"
    num_classes = 1000
    downloadable = False
    expected_files = (
        "ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar (torchvision unpacks "
        "them into meta.bin, train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), or those three already unpacked"
    )
    source = (
        "https://image-net.org/download-images after registering there (ILSVRC2012: the training and validation "
        "image tars and the development kit, task 1 & 2)"
    )

    def __init__(self, root: str, image_size: int = 72, channels: int = 3, **kwargs: Any) -> None:
        kwargs.setdefault("in_memory", False)
        kwargs.setdefault("val_size", 10000)
        super().__init__(root, image_size, channels, **kwargs)

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import ImageNet
        from torchvision.datasets.imagenet import load_meta_file

        if split == "val":
            return None
        split = "train" if split == "train" else "val"
        images = ImageNet(str(self.root), split, transform=transform, loader=load_image)
        if split == "train":  # a test split that lacks a class is refused by setup, against the training classes
            images = self.refuse_missing_classes(images, load_meta_file(str(self.root))[0])
        return images


class ImagenetteDataModule(ImageDataModule):
    """Imagenette (fastai): 10 easy ImageNet classes, the data set of the seeds. Official val is the test
    split; validation is carved from train. ``size``: ``full``, ``320px`` or ``160px``."""

    name = "Imagenette"
    num_classes = 10
    FOLDERS = {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}  # torchvision's

    def __init__(self, root: str, image_size: int = 128, channels: int = 3, size: str = "160px", **kwargs: Any) -> None:
        if size not in self.FOLDERS:
            raise ConfigurationError(f"dataset.size={size!r} must be one of {', '.join(self.FOLDERS)}")
        kwargs.setdefault("in_memory", False)
        super().__init__(root, image_size, channels, **kwargs)
        self.size = size
        folder = self.FOLDERS[size]
        self.expected_files = f"{folder}/train/<wnid>/*.JPEG, {folder}/val/<wnid>/*.JPEG"
        self.source = f"https://github.com/fastai/imagenette ({folder}.tgz, extract into root)"

    def cache_key(self) -> dict[str, Any]:
        return {"size": self.size}

    def open_split(self, split: str, transform: Any, download: bool) -> Dataset | None:
        from torchvision.datasets import Imagenette

        if split == "val":
            return None
        split = "train" if split == "train" else "val"
        images = Imagenette(
            str(self.root), split=split, size=self.size, transform=transform, download=download, loader=load_image
        )
        if split == "train":  # a test split that lacks a class is refused by setup, against the training classes
            images = self.refuse_missing_classes(images, Imagenette._WNID_TO_CLASS)  # torchvision's list of the ten
        return images
