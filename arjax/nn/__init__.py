"""Equinox autoregressive networks: ``net(x, context=None) -> logits [N, K]``, row i reads x[:i]."""

from arjax.nn.gated_pixelcnn import GatedPixelCNN
from arjax.nn.made import MADE
from arjax.nn.mean_field import MeanField
from arjax.nn.pixelcnn import PixelCNN
from arjax.nn.transformer import Transformer

__all__ = ["MADE", "MeanField", "PixelCNN", "GatedPixelCNN", "Transformer"]
