"""The start-up baseline: a plain PyTorch script that loads digits, builds the same ResNet and takes one
training step, then prints the wall-clock time of that step's start (``time.time()``)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from labelsmooth.models import ResNetV1


def main() -> None:
    torch.manual_seed(0)
    # the file load_digits reads, read without importing scikit-learn (SciPy, pandas), as the pipeline reads it
    sklearn = importlib.util.find_spec("sklearn").submodule_search_locations[0]
    digits = np.loadtxt(Path(sklearn) / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    images = torch.from_numpy(digits[:, :-1].reshape(-1, 8, 8) / 16.0).float().unsqueeze(1)
    targets = torch.from_numpy(digits[:, -1]).long()
    net = ResNetV1(num_classes=10, in_channels=1, image_size=8, depth=8)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=64, shuffle=True)
    for inputs, target in loader:
        print(f"first_train_step {time.time()}", flush=True)
        optimizer.zero_grad()
        F.cross_entropy(net(inputs), target, label_smoothing=0.1).backward()
        optimizer.step()
        break


if __name__ == "__main__":
    main()
