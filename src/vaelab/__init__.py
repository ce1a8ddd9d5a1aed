"""vaelab: train variational autoencoders on MNIST-style images and see what the latent size does."""

__version__ = "0.1.0"

from .checkpoint import load_model
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data import Dataset, ImageSplit, load_dataset
from .models import VAE
from .training import Trainer

__all__ = [
    "VAE", "DataConfig", "Dataset", "ImageSplit", "ModelConfig", "RunConfig", "TrainConfig", "Trainer",
    "load_dataset", "load_model", "__version__",
]
