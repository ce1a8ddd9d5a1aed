"""Model files for use outside vaelab: ONNX encoder and decoder for any ONNX runtime.

The encoder maps images (N, C, H, W) in [0, 1], of the shape the model was trained on, to the
posterior parameters ``mu`` and ``logvar``; the decoder maps latent points (N, *latent_shape) to the
decoder mean ``image`` in [0, 1] (``VAE.decoder_mean`` of the decoder output, as ``VAE.reconstruct`` and
``VAE.sample`` return). The batch axis is dynamic.
For the safetensors + JSON form of a model see ``VAE.save_pretrained``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .atomic import check_writable
from .errors import OutputDirError, VaelabError
from .models import VAE
from .rundir import CHECKPOINT, DECODER_ONNX, ENCODER_ONNX, PRETRAINED_CONFIG, PRETRAINED_WEIGHTS

PRETRAINED_FILES = (PRETRAINED_WEIGHTS, PRETRAINED_CONFIG)
ONNX_FILES = (ENCODER_ONNX, DECODER_ONNX)

EXPORT_EXTRA = "pip install 'vaelab[export]'"


def check_export_target(directory: Path, files: tuple[str, ...]) -> None:
    """Refuse to write where it would replace a file: a run directory's config.json (what --resume and --config
    read) or another exported model. An OutputDirError says which files are in the way."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputDirError(f"{directory}: is a file, not a directory; give a new or empty directory to export to.")
    blocking = next((parent for parent in directory.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise OutputDirError(f"{directory}: cannot be made, because {blocking} is a file; give a new or empty "
                             "directory to export to.")
    in_the_way = [name for name in (*files, CHECKPOINT) if (directory / name).exists()]
    if in_the_way:
        what = "a run directory" if (directory / CHECKPOINT).exists() else "a directory that already holds a model"
        raise OutputDirError(f"{directory}: is {what} ({', '.join(in_the_way)}); exporting there would overwrite "
                             "it. Export into a new or empty directory, or remove those files first.")
    check_writable(directory, "the exported model")


class _Encoder(nn.Module):
    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(image)


class _Decoder(nn.Module):
    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decoder_mean(self.model.decode(z))


def export_onnx(model: VAE, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` for ``model`` into ``directory``; returns their paths."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; checked here for a clear message)
    except ImportError:
        raise VaelabError(f"ONNX export needs the onnx packages: {EXPORT_EXTRA}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    batch = torch.export.Dim("batch", min=1)
    examples = ((_Encoder(model), torch.rand(2, *model.config.image_shape), ["image"], ["mu", "logvar"], ENCODER_ONNX),
                (_Decoder(model), torch.randn(2, *model.latent_shape), ["z"], ["image"], DECODER_ONNX))
    paths = []
    for module, example, inputs, outputs, name in examples:
        paths.append(directory / name)
        with _quiet_exporter():
            program = torch.onnx.export(module.eval(), (example,), input_names=inputs, output_names=outputs,
                                        dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False)
        program.save(str(paths[-1]))
    return paths[0], paths[1]


class _quiet_exporter:
    """The exporter logs its progress and warns about operators of packages vaelab does not use."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
