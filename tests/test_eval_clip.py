"""CLIP image classification on a tiny family (vision tower fine-tuned per task, text tower the
base's): zero-shot accuracy and given heads equal hand computations on a 3-image folder, and
the fine-tuned models beat the base while a task arithmetic merge lands between."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eval_fixtures import state_dict, task_arithmetic
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoTokenizer, CLIPModel

from tadrop.evaluate import CLIPEvaluator, EvaluationError
from tadrop.evaluate.clip import Preprocess, image_folder

TASKS = ("colour", "stripes")


@pytest.fixture(scope="module")
def clip(tiny_families):
    return tiny_families / "clip"


@pytest.fixture(scope="module")
def models(clip):
    base = state_dict(clip / "base")
    tasks = {task: state_dict(clip / task) for task in TASKS}
    return {"base": base, **tasks, "merged": task_arithmetic(base, list(tasks.values()))}


@pytest.fixture
def three_images(tmp_path):
    """A 3-image folder in ImageFolder layout: two classes, names with an underscore."""
    colours = {"dark_red": [(200, 20, 20), (90, 10, 10)], "green": [(20, 200, 20)]}
    for name, values in colours.items():
        (tmp_path / name).mkdir()
        for index, value in enumerate(values):
            Image.new("RGB", (24, 20), value).save(tmp_path / name / f"{index}.png")
    return tmp_path


def test_individual_models_beat_the_base_and_the_merge_lands_between(clip, models):
    evaluator = CLIPEvaluator(
        clip / "base", {task: clip / "data" / task for task in TASKS}, device="cpu"
    )
    for task in TASKS:
        scores = {name: evaluator.evaluate(task, models[name]) for name in ("base", "merged", task)}
        accuracy = {name: value["accuracy"] for name, value in scores.items()}
        assert accuracy["base"] < accuracy[task]
        assert accuracy["base"] <= accuracy["merged"] <= accuracy[task]
        assert scores[task]["n"] == len(image_folder(clip / "data" / task)[1])


def hand_pixels(path, size: int = 16) -> torch.Tensor:
    """Shortest side to 16 (bicubic), centre crop, [0, 1], OpenAI CLIP mean and std."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
    return torch.from_numpy((array - mean) / std).permute(2, 0, 1)


def test_zero_shot_accuracy_equals_the_hand_computation(clip, models, three_images):
    scores = CLIPEvaluator(
        clip / "base", {"t": three_images}, template="a photo of a {}.", device="cpu"
    ).evaluate("t", models["colour"])
    base = CLIPModel.from_pretrained(clip / "base").eval()
    tuned = CLIPModel.from_pretrained(clip / "colour").eval()
    tokenizer = AutoTokenizer.from_pretrained(clip / "base")
    prompts = ["a photo of a dark red.", "a photo of a green."]  # sorted folders, _ -> space
    images = sorted(three_images.glob("*/*.png"))
    labels = torch.tensor([0 if "dark_red" in str(path) else 1 for path in images])
    with torch.inference_mode():
        tokens = tokenizer(prompts, padding=True, return_tensors="pt")
        text = base.text_projection(base.text_model(**tokens).pooler_output)
        pixels = torch.stack([hand_pixels(path) for path in images])
        image = tuned.visual_projection(tuned.vision_model(pixel_values=pixels).pooler_output)
        text = text / text.norm(dim=-1, keepdim=True)
        image = image / image.norm(dim=-1, keepdim=True)
        logits = base.logit_scale.exp() * image @ text.T  # logit_scale is a 0-d tensor
    expected = float((logits.argmax(-1) == labels).double().mean())
    assert scores["n"] == 3
    assert scores["accuracy"] == pytest.approx(expected)
    assert scores["accuracy_stderr"] == pytest.approx(math.sqrt(expected * (1 - expected) / 3))


def test_a_given_head_replaces_the_prompts(clip, models, three_images, tmp_path):
    head = tmp_path / "head.safetensors"
    # normalised image features are nearly orthogonal to +-w; a bias picks the class instead
    save_file({"weight": torch.zeros(2, 16), "bias": torch.tensor([0.0, 1.0])}, str(head))
    evaluator = CLIPEvaluator(clip / "base", {"t": three_images}, heads={"t": head}, device="cpu")
    assert evaluator.evaluate("t", models["base"])["accuracy"] == pytest.approx(1 / 3)
    save_file({"weight": torch.zeros(3, 16)}, str(head))
    evaluator = CLIPEvaluator(clip / "base", {"t": three_images}, heads={"t": head}, device="cpu")
    with pytest.raises(EvaluationError, match=r"\(3, 16\) does not fit 2 classes"):
        evaluator.evaluate("t", models["base"])


def test_preprocessing_matches_transformers_pil_image_processor(clip):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
    )
    expected = processor(images=image, return_tensors="pt")["pixel_values"][0]
    ours = Preprocess.for_folder(clip / "base", 16)(image)
    assert ours.shape == expected.shape == (3, 16, 16)
    assert torch.allclose(ours, expected, atol=0.05)


def test_folders_and_templates_are_checked(clip, tmp_path):
    with pytest.raises(EvaluationError, match="needs \\{\\}"):
        CLIPEvaluator(clip / "base", {"t": tmp_path}, template="a photo", device="cpu")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="two or more class subfolders"):
        image_folder(tmp_path)
