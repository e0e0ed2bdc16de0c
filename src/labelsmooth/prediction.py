"""Predicting on raw images with a trained run's model: its preprocessing applied as in training."""

from __future__ import annotations

from typing import Any

import torch


class PredictsRawImages:
    """``predict`` / ``predict_proba`` on raw images for a LightningModule that carries a run specification
    (``self.specification``: the data's image shape and preprocessing) and reads its outputs through
    ``prediction_logits``: ``LabelSmoothingClassifier``."""

    def prepare_inputs(self, images: Any) -> torch.Tensor:
        """Raw images as the data set stores them → network inputs, as the run's data module prepares them.

        ``images``: a tensor or array of uint8 pixels (scaled to ``input_range`` and normalised with the training
        split's statistics, as in training) or of floats (used as they are, as the data module uses float
        batches); ``(N, C, H, W)``, channels-last ``(N, H, W, C)``, ``(N, H, W)`` for one channel, or one image.
        """
        from labelsmooth.data.preprocess import BatchPreprocessor, as_image_batch

        if self.specification is None:
            raise RuntimeError(
                "predict needs the run specification: load the model with "
                "LabelSmoothingClassifier.load_from_checkpoint(path) or build it with from_specification"
            )
        batch = as_image_batch(images, self.specification.image_shape)
        if batch.dtype == torch.uint8 and self.specification.preprocessing is not None:
            preprocessor = BatchPreprocessor.from_record(self.specification.preprocessing)
            batch = preprocessor(batch.to(self.device), train=False)
        return batch.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def predict_proba(self, images: Any) -> torch.Tensor:
        """The predictive distribution (N, K) of raw images (``prepare_inputs``): the softmax of the strategy's
        ``prediction_logits``, with the network in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.prediction_logits(self(self.prepare_inputs(images))).softmax(dim=-1)
        finally:
            self.train(was_training)

    def predict(self, images: Any) -> torch.Tensor:
        """The predicted class index of each raw image (``predict_proba``'s argmax), shape (N,)."""
        return self.predict_proba(images).argmax(dim=-1)
