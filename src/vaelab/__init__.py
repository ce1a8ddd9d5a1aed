"""vaelab: train variational autoencoders on MNIST-style images and see what the latent size does.

From Python, ``vaelab.study(...)`` and ``vaelab.train(...)`` (see ``vaelab.pipeline``) do what the
``vaelab study`` and ``vaelab train`` commands do and return the results.
"""

__version__ = "0.1.0"

from .checkpoint import load_model
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data import Dataset, ImageSplit, load_dataset
from .models import VAE
from .pipeline import RunOptions, RunResult, StudyResult, study, train
from .training import Trainer

__all__ = [
    "VAE", "DataConfig", "Dataset", "ImageSplit", "ModelConfig", "RunConfig", "RunOptions", "RunResult",
    "StudyResult", "TrainConfig", "Trainer", "load_dataset", "load_model", "study", "train", "__version__",
]
