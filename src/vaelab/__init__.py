"""vaelab: train variational autoencoders on your images and see, side by side, what each setting does.

From Python, ``vaelab.study(...)`` and ``vaelab.train(...)`` (see ``vaelab.pipeline``) do what the
``vaelab study`` and ``vaelab train`` commands do and return the results. Every mistake in what they are given
raises a ``vaelab.VaelabError`` (``vaelab.ConfigError`` for a setting out of range) with the message the command
line prints.
"""

__version__ = "0.1.0"

from .callbacks import Callback, RunStart
from .checkpoint import load_model
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data import Dataset, ImageSplit
from .datasets import load_dataset
from .errors import ConfigError, VaelabError
from .models import VAE
from .pipeline import RunOptions, RunResult, StudyResult, study, train
from .training import Trainer

__all__ = [
    "VAE", "Callback", "ConfigError", "DataConfig", "Dataset", "ImageSplit", "ModelConfig", "RunConfig", "RunOptions",
    "RunResult", "RunStart", "StudyResult", "TrainConfig", "Trainer", "VaelabError", "load_dataset", "load_model",
    "study", "train", "__version__",
]
