"""EfficientNet-Lite0 (ImageNet weights) as the image zoo's backbone.

Grayscale images are resized to `image_size`, scaled as the weights expect ((x - 0.5) / 0.5,
x in [0, 1]) and repeated to 3 channels. Features are the global average of the last
convolution's activations (1280 per image); the ImageNet classifier (`_fc`) is removed.

BatchNorm layers are fine-tuned in eval mode: their affine weights train, their running
statistics stay at the ImageNet values. Every checkpoint of the zoo then holds the same
statistics, so merging never averages variances (which task arithmetic could make negative).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F

from tadrop.io import write_checkpoint
from tadrop.zoo.backbones import Encoded
from tadrop.zoo.datasets import LabelledData
from tadrop.zoo.errors import CorruptZooError, MissingSourceError
from tadrop.zoo.sources import EFFICIENTNET_CODE, EFFICIENTNET_WEIGHTS

MODEL_NAME = "efficientnet-lite0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
CLASSIFIER_PREFIX = "_fc."


class ImageBackbone:
    """EfficientNet-Lite0 without its classifier, for `image_size` x `image_size` inputs."""

    kind = "image"
    feature_dim = 1280

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def _new_module(self) -> torch.nn.Module:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise MissingSourceError(
                f"Python package {EFFICIENTNET_CODE.dist}", EFFICIENTNET_CODE.install
            ) from None
        # "same" padding is precomputed from image_size, so it must match the inputs.
        module = EfficientNet.from_name(MODEL_NAME, image_size=self.image_size)
        module._fc = torch.nn.Identity()
        return module

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        module = self._new_module()
        kept = {n: t for n, t in weights.items() if not n.startswith(CLASSIFIER_PREFIX)}
        module.load_state_dict(kept, strict=True)
        return module.eval()

    def load_pretrained(self) -> torch.nn.Module:
        path = EFFICIENTNET_WEIGHTS.file(WEIGHTS_FILE)
        return self._load_weights(torch.load(path, map_location="cpu", weights_only=True))

    def load(self, model_dir: Path) -> torch.nn.Module:
        weights_path = Path(model_dir) / "model.safetensors"
        if not weights_path.is_file():
            raise CorruptZooError(f"{weights_path}: missing; rebuild the zoo.")
        return self._load_weights(safetensors.torch.load_file(str(weights_path)))

    def config(self) -> dict[str, Any]:
        return {
            "architectures": ["EfficientNet"],
            "model_type": MODEL_NAME,
            "image_size": self.image_size,
            "hidden_size": self.feature_dim,
            "code": f"{EFFICIENTNET_CODE.dist}=={EFFICIENTNET_CODE.version}",
            "input_scaling": "(x - 0.5) / 0.5 for x in [0, 1], grayscale repeated to 3 channels",
            "classifier": "removed (_fc); task heads are in the zoo's heads/ folder",
        }

    def save(self, module: torch.nn.Module, out_dir: Path, metadata: dict[str, Any]) -> Path:
        tensors = ((name, t.detach().contiguous()) for name, t in module.state_dict().items())
        with tempfile.TemporaryDirectory() as aux_dir:
            (Path(aux_dir) / "config.json").write_text(json.dumps(self.config(), indent=2))
            return write_checkpoint(
                tensors, out_dir, aux_dir=aux_dir, metadata=metadata, overwrite=True
            )

    def encode(self, data: LabelledData) -> Encoded:
        images = torch.as_tensor(data.inputs, dtype=torch.float32).unsqueeze(1) / 255.0
        resized = F.interpolate(
            images, size=(self.image_size, self.image_size), mode="bilinear", antialias=True
        )  # (N, 1, S, S)
        return Encoded(
            tensors={"pixels": (resized.clamp(0.0, 1.0) - 0.5) / 0.5},
            labels=torch.as_tensor(data.labels, dtype=torch.int64),
        )

    def batch(self, encoded: Encoded, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pixels": encoded.tensors["pixels"][indices].expand(-1, 3, -1, -1)}

    def features(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        activations = module.extract_features(batch["pixels"])  # (B, 1280, s, s)
        return F.adaptive_avg_pool2d(activations, 1).flatten(1)  # (B, 1280)

    def train_mode(self, module: torch.nn.Module) -> None:
        module.train()
        for layer in module.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.eval()  # keep ImageNet running statistics (see module docstring)
