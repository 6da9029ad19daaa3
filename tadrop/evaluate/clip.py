"""CLIP image classifiers (Hugging Face ``CLIPModel`` folders, as FusionBench publishes them):
accuracy on one image folder per task, scored in memory.

The folder has the ImageFolder layout: one subfolder per class, named after the class
(``_`` read as a space), classes in sorted order. Without a head, a task is classified
zero-shot as in FusionBench: each class's text embedding is the normalised mean of the
embeddings of its prompts (``template.format(class name)``), computed once by the BASE model's
text tower (the merge only changes the vision tower); logits are
``exp(logit_scale) * normalize(image) @ normalize(text).T``. A head file (safetensors or torch
file) holding ``weight`` (classes, projection dim) and optionally ``bias`` replaces the text
embeddings: logits = ``normalize(image) @ weight.T + bias``.

Images are resized (shortest side, bicubic), centre-cropped and normalised with PIL and torch,
using the folder's ``preprocessor_config.json`` when it has one (else the vision config's image
size and OpenAI's CLIP mean and std).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tadrop.evaluate.inmemory import InMemoryModel
from tadrop.evaluate.scores import EvaluationError, StateDict, accuracy_scores

DEFAULT_TEMPLATE = "a photo of a {}."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def check_templates(template: str | Sequence[str]) -> list[str]:
    """The prompt templates as a list, each with the ``{}`` the class name goes into."""
    templates = [template] if isinstance(template, str) else list(template)
    for text in templates:
        if "{}" not in text:
            raise EvaluationError(f"prompt template {text!r} needs {{}} where the class name goes")
    return templates


def image_folder(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image file, class index)]) of an ImageFolder-layout folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; a CLIP task needs one subfolder per class")
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    samples = [
        (image, index)
        for index, name in enumerate(classes)
        for image in sorted((folder / name).iterdir())
        if image.suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(classes) < 2 or not samples:
        raise ValueError(
            f"{folder}: expected two or more class subfolders holding images "
            f"({', '.join(IMAGE_SUFFIXES)}); found classes {classes[:5]} and {len(samples)} images"
        )
    return classes, samples


class Preprocess:
    """PIL image -> (3, crop, crop) tensor: shortest side to ``size`` (bicubic), centre crop,
    scale to [0, 1], normalise per channel."""

    def __init__(self, size: int, crop: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.crop = size, crop
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    @classmethod
    def for_folder(cls, folder: Path, image_size: int) -> Preprocess:
        settings: dict[str, Any] = {}
        config_file = Path(folder) / "preprocessor_config.json"
        if config_file.is_file():
            settings = json.loads(config_file.read_text(encoding="utf-8"))
        size = settings.get("size", image_size)
        crop = settings.get("crop_size", size)
        size = size.get("shortest_edge", image_size) if isinstance(size, dict) else size
        crop = crop.get("height", size) if isinstance(crop, dict) else crop
        mean = settings.get("image_mean", OPENAI_CLIP_MEAN)
        std = settings.get("image_std", OPENAI_CLIP_STD)
        return cls(int(size), int(crop), mean, std)

    def __call__(self, image: Any) -> torch.Tensor:
        from PIL import Image

        image = image.convert("RGB")
        scale = self.size / min(image.size)
        width, height = (max(self.size, round(side * scale)) for side in image.size)
        image = image.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - self.crop) // 2, (height - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(self.crop, self.crop, 3).permute(2, 0, 1).float() / 255.0
        return (pixels - self.mean) / self.std


class CLIPEvaluator:
    """``data[task]``: the task's image folder; ``heads[task]``: an optional head file."""

    def __init__(
        self,
        base: str | os.PathLike,
        data: Mapping[str, str | os.PathLike],
        *,
        template: str | Sequence[str] = DEFAULT_TEMPLATE,
        heads: Mapping[str, str | os.PathLike] | None = None,
        tokenizer: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 64,
    ) -> None:
        self.base = Path(base)
        self.data = {task: Path(path) for task, path in data.items()}
        self.templates = check_templates(template)
        self.heads = {task: Path(path) for task, path in (heads or {}).items()}
        self.tokenizer_path = Path(tokenizer) if tokenizer else self.base
        self.device = device
        self.batch_size = batch_size
        self._model: InMemoryModel | None = None
        self._images: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._classifiers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def tasks(self) -> list[str]:
        return list(self.data)

    def evaluate(self, task: str, state_dict: StateDict) -> dict[str, float]:
        if task not in self.data:
            raise EvaluationError(f"no image folder for task {task!r}; tasks: {self.tasks}")
        model = self.model()
        weight, bias = self.classifier(task)  # from the base, before the state dict is loaded
        pixels, labels = self.images(task)
        module = model.load(state_dict)
        predictions = []
        with torch.inference_mode():
            for start in range(0, len(labels), self.batch_size):
                batch = pixels[start : start + self.batch_size].to(model.device)
                features = image_features(module, batch.to(next(module.parameters()).dtype))
                logits = features @ weight.to(features).T + bias.to(features)
                predictions.append(logits.argmax(dim=-1).cpu())
        return accuracy_scores(torch.cat(predictions) == labels)

    def model(self) -> InMemoryModel:
        if self._model is None:
            from transformers import CLIPModel

            self._model = InMemoryModel(self.base, CLIPModel.from_pretrained, self.device)
        return self._model

    def images(self, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of a task: (n, 3, crop, crop) float32 and (n,) int64, kept."""
        if task not in self._images:
            from PIL import Image

            _, samples = image_folder(self.data[task])
            module = self.model().module
            preprocess = Preprocess.for_folder(self.base, module.config.vision_config.image_size)
            tensors = []
            for path, _ in samples:
                with Image.open(path) as image:
                    tensors.append(preprocess(image))
            labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
            self._images[task] = (torch.stack(tensors), labels)
        return self._images[task]

    def classifier(self, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (classes, dim), bias (classes,)) applied to normalised image features."""
        if task not in self._classifiers:
            classes, _ = image_folder(self.data[task])
            if task in self.heads:
                self._classifiers[task] = read_head(self.heads[task], len(classes))
            else:
                self._classifiers[task] = self._zero_shot(classes)
        return self._classifiers[task]

    def _zero_shot(self, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import AutoTokenizer

        module = self.model().load({})  # the base's own tensors
        tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_path))
        rows = []
        with torch.inference_mode():
            for name in classes:
                prompts = [text.format(name.replace("_", " ")) for text in self.templates]
                tokens = tokenizer(prompts, padding=True, return_tensors="pt")
                tokens = {key: value.to(self.model().device) for key, value in tokens.items()}
                output = module.text_model(
                    input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
                )
                embeddings = F.normalize(module.text_projection(output.pooler_output), dim=-1)
                rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
            scale = module.logit_scale.detach().float().reshape(()).exp()  # a 0-d tensor
        weight = torch.stack(rows).float().cpu() * scale.cpu()
        return weight, torch.zeros(len(classes))


def image_features(module: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised projected image embeddings of a CLIPModel: (batch, projection dim)."""
    pooled = module.vision_model(pixel_values=pixels).pooler_output
    return F.normalize(module.visual_projection(pooled).float(), dim=-1)


def read_head(path: Path, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a head file; its rows must match the folder's classes."""
    from tadrop.io import open_checkpoint

    checkpoint = open_checkpoint(path)
    names = checkpoint.keys()
    weight_name = next((name for name in names if name.endswith("weight")), None)
    if weight_name is None:
        raise EvaluationError(f"head {path} holds no 'weight' tensor (found {names[:5]})")
    weight = checkpoint.get(weight_name).float()
    bias_names = [name for name in names if name.endswith("bias")]
    bias = checkpoint.get(bias_names[0]).float() if bias_names else torch.zeros(len(weight))
    if weight.ndim != 2 or weight.shape[0] != classes:
        raise EvaluationError(
            f"head {path}: weight of shape {tuple(weight.shape)} does not fit {classes} classes "
            "(expected (classes, projection dim), rows in the sorted order of the class folders)"
        )
    return weight, bias
