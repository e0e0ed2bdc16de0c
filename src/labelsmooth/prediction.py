"""Predicting on raw images with a trained run's model: its preprocessing applied as in training."""

from __future__ import annotations

import os
from typing import Any

import torch


class PredictsRawImages:
    """``predict`` / ``predict_proba`` on raw images for a LightningModule that carries a run specification
    (``self.specification``: the data's image shape and preprocessing) and reads its outputs through
    ``prediction_logits``: ``LabelSmoothingClassifier``."""

    def prepare_inputs(self, images: Any) -> torch.Tensor:
        """Raw images → network inputs, as the run's data module prepares them.

        ``images``: a tensor or array of pixels, either uint8 in 0..255 or floats in [0, 1] (``v/255``, as
        torchvision's ``ToTensor`` gives them), scaled to the run's ``input_range`` and normalised with its training
        split's statistics, as in training; ``(N, C, H, W)``, channels-last ``(N, H, W, C)``, ``(N, H, W)`` for one
        channel, or one image. Floats outside [0, 1] are refused (scikit-learn's digits are 0..16: divide by 16).
        Or PIL images or image files, one or a list, decoded as the image-folder data sets decode theirs (grey or
        RGB as the model takes, the shorter side resized to its input size and the centre cropped). Inputs that are
        already preprocessed go to the network itself: ``model(x)``. A run whose data module feeds its batches as
        stored (no preprocessing record) takes them as they are.
        """
        from labelsmooth.data.preprocess import BatchPreprocessor, as_image_batch

        if self.specification is None:
            raise RuntimeError(
                "predict needs the run specification: load the model with "
                "LabelSmoothingClassifier.load_from_checkpoint(path) or build it with from_specification"
            )
        batch = as_image_batch(decoded_images(images, self.specification.image_shape), self.specification.image_shape)
        if self.specification.preprocessing is None:
            return batch.to(device=self.device, dtype=torch.float32)
        if batch.dtype == torch.bool:
            raise ValueError("predict takes pixels in 0..255 (uint8) or in [0, 1] (floats), not booleans: convert them")
        kind, top = ("floats", 1.0) if batch.is_floating_point() else ("integers", 255.0)
        if batch.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch has no min or max for these
            batch = batch.to(torch.int64)
        low, high = (float(batch.min()), float(batch.max())) if batch.numel() else (0.0, 0.0)
        if batch.is_floating_point() and not bool(batch.isfinite().all()):
            raise ValueError(f"predict takes finite pixels; {int((~batch.isfinite()).sum())} of these are NaN or inf")
        if low < 0.0 or high > top:
            raise ValueError(
                f"predict takes pixels in 0..255 (uint8) or in [0, 1] (floats); these {kind} lie in [{low:g}, "
                f"{high:g}]: scale them, or give preprocessed inputs to the network itself, model(x)"
            )
        if batch.is_floating_point():
            batch = batch.double().mul(255.0)
        preprocessor = BatchPreprocessor.from_record(self.specification.preprocessing)
        return preprocessor(batch.to(self.device), train=False).to(dtype=torch.float32)

    @torch.no_grad()
    def predict_proba(self, images: Any) -> torch.Tensor:
        """The predictive distribution (N, K) of raw images (``prepare_inputs``): the softmax of the strategy's
        ``prediction_logits``, with the network in eval mode."""
        was_training = self.training
        self.eval()
        try:
            inputs = self.prepare_inputs(images)
            with self.specification.autocast(inputs.device.type):  # the run's precision, as its test step ran
                logits = self.prediction_logits(self(inputs))
            return logits.float().softmax(dim=-1)
        finally:
            self.train(was_training)

    def predict(self, images: Any) -> torch.Tensor:
        """The predicted class index of each raw image (``predict_proba``'s argmax), shape (N,)."""
        return self.predict_proba(images).argmax(dim=-1)


def decoded_images(images: Any, image_shape: tuple[int, int, int]) -> Any:
    """PIL images or image files (one, or a list) as a uint8 ``(N, C, H, W)`` tensor of ``image_shape``, decoded as
    ``labelsmooth.data.in_memory.decode_transform`` decodes a data set's images; anything else as it is."""
    from PIL import Image

    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items or not all(isinstance(item, (str, os.PathLike, Image.Image)) for item in items):
        return images
    from labelsmooth.data.image_folder import eight_bit, load_image
    from labelsmooth.data.in_memory import decode_transform

    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"PIL images for a model of {height}x{width} inputs: give arrays of that size instead")
    transform = decode_transform(height, channels)
    opened = [eight_bit(item) if isinstance(item, Image.Image) else load_image(item) for item in items]
    return torch.stack([transform(image) for image in opened])
