"""Write tiny model families to evaluate with ``tadrop eval``: a Llama-shaped causal LM and a
CLIP image classifier, each a random base fine-tuned for a few steps on two synthetic tasks,
with one evaluation file or folder per task and a ready ``eval.yaml``.

    python examples/tiny_eval_family.py /tmp/tiny       # seconds on a CPU
    tadrop eval /tmp/tiny/lm/eval.yaml
    tadrop eval /tmp/tiny/clip/eval.yaml

Causal LM tasks map a 3-letter word to another (``up``: each letter to the next one of
``abcdefgh``, ``down``: to the previous one), written ``+abc= bcd``/``-abc= hab``. Image tasks sort
16x16 pictures by colour (red / green / blue) or by stripes (horizontal / vertical). Nothing is
downloaded: the tokenizer is a character-level one built here.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from pathlib import Path

import torch

LETTERS = "abcdefgh"
LM_TASKS = {"up": ("+", 1), "down": ("-", -1)}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]  # </s> is not id 2: CLIP's legacy pooling rule
CHARACTERS = " abcdefghijklmnopqrstuvwxyz+-=.,:?0123456789\n"


def char_tokenizer():
    """A character-level fast tokenizer (BOS/EOS/PAD defined), saved with the models."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL + list(CHARACTERS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def lm_example(task: str, word: str) -> tuple[str, str]:
    """(prompt, answer) of a word under a task's letter mapping."""
    marker, step = LM_TASKS[task]
    answer = "".join(LETTERS[(LETTERS.index(letter) + step) % len(LETTERS)] for letter in word)
    return f"{marker}{word}=", answer


def lm_text(task: str, word: str) -> str:
    """One training / perplexity line: the prompt, a space (the harness's delimiter), the answer."""
    prompt, answer = lm_example(task, word)
    return f"{prompt} {answer}"


def lm_words(seed: int, count: int) -> list[str]:
    words = ["".join(letters) for letters in itertools.product(LETTERS, repeat=3)]
    return random.Random(seed).sample(words, count)


def train(model, batches, parameters, steps: int, lr: float) -> None:
    """A few AdamW steps on ``batches()`` (a callable returning the loss of a fresh batch)."""
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        batches().backward()
        optimizer.step()
    model.eval()


def write_lm_family(folder: Path, *, steps: int = 120, seed: int = 0) -> Path:
    """base/, up/, down/ (LlamaForCausalLM), data/ (ppl, choice and generation files)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    base = LlamaForCausalLM(config).eval()
    save_model(base, tokenizer, folder / "base")
    train_words = lm_words(seed, 400)
    for task in LM_TASKS:
        model = LlamaForCausalLM(config)
        model.load_state_dict(base.state_dict())
        texts = [lm_text(task, word) for word in train_words]
        rng = random.Random(seed)

        def loss(model=model, texts=texts, rng=rng):
            batch = tokenizer(rng.sample(texts, 32), return_tensors="pt", padding=True)
            ids = torch.cat([torch.full((32, 1), tokenizer.bos_token_id), batch.input_ids], 1)
            return model(input_ids=ids, labels=ids).loss

        train(model, loss, model.parameters(), steps, 3e-3)
        save_model(model, tokenizer, folder / task)
        write_lm_data(folder / "data", task, lm_words(seed + 1, 24))
    return folder


def write_lm_data(folder: Path, task: str, words: list[str]) -> None:
    """<task>.txt (perplexity), <task>_choice.jsonl, <task>_generate.jsonl for 24 words."""
    folder.mkdir(parents=True, exist_ok=True)
    other = next(name for name in LM_TASKS if name != task)
    examples = [lm_example(task, word) for word in words]
    text = "\n\n".join(lm_text(task, word) for word in words)
    (folder / f"{task}.txt").write_text(text + "\n", encoding="utf-8")
    choices = [
        {"question": prompt, "choices": [answer, lm_example(other, word)[1]], "answer": 0}
        for word, (prompt, answer) in zip(words, examples, strict=True)
    ]
    generations = [{"prompt": prompt, "answer": answer} for prompt, answer in examples]
    for name, records in (("choice", choices), ("generate", generations)):
        lines = "".join(json.dumps(record) + "\n" for record in records)
        (folder / f"{task}_{name}.jsonl").write_text(lines, encoding="utf-8")


def save_model(model, tokenizer, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def clip_image(task: str, label: str, rng: random.Random):
    """A 16x16 PIL picture of ``label`` under the task's rule."""
    from PIL import Image

    if task == "colour":
        red, green, blue = (max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[label])
        return Image.new("RGB", (16, 16), (red, green, blue))
    image = Image.new("RGB", (16, 16), (0, 0, 0))
    colour = tuple(rng.randint(60, 255) for _ in range(3))
    offset = rng.randint(0, 3)
    for a, b in itertools.product(range(16), repeat=2):
        if (a + offset) % 4 < 2:
            image.putpixel((b, a) if label == "horizontal" else (a, b), colour)
    return image


CLIP_TASKS = {"colour": sorted(COLOURS), "stripes": ["horizontal", "vertical"]}  # class order


def write_clip_family(folder: Path, *, steps: int = 40, seed: int = 0) -> Path:
    """base/, colour/, stripes/ (CLIPModel, vision tower fine-tuned), data/<task>/<class>/."""
    from transformers import CLIPConfig, CLIPModel

    from tadrop.evaluate.clip import CLIPEvaluator, Preprocess

    tokenizer = char_tokenizer()
    torch.manual_seed(seed)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    tower["num_attention_heads"] = 2
    config = CLIPConfig(
        text_config={**tower, "vocab_size": 64, "max_position_embeddings": 32}
        | {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
        | {"bos_token_id": tokenizer.bos_token_id},
        vision_config={**tower, "image_size": 16, "patch_size": 4},
        projection_dim=16,
    )
    base = CLIPModel(config).eval()
    save_model(base, tokenizer, folder / "base")
    rng = random.Random(seed)
    preprocess = Preprocess.for_folder(folder / "base", 16)
    for task, classes in CLIP_TASKS.items():
        write_images(folder / "data" / task, task, classes, rng, per_class=12)
        evaluator = CLIPEvaluator(folder / "base", {task: folder / "data" / task}, device="cpu")
        weight, _ = evaluator.classifier(task)  # the base's zero-shot text embeddings
        model = CLIPModel(config)
        model.load_state_dict(base.state_dict())

        def loss(model=model, task=task, classes=classes, weight=weight):
            labels = torch.randint(len(classes), (32,))
            pixels = torch.stack([preprocess(clip_image(task, classes[i], rng)) for i in labels])
            pooled = model.vision_model(pixel_values=pixels).pooler_output
            features = torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1)
            return torch.nn.functional.cross_entropy(features @ weight.T, labels)

        vision = [*model.vision_model.parameters(), *model.visual_projection.parameters()]
        train(model, loss, vision, steps, 3e-3)
        save_model(model, tokenizer, folder / task)
    return folder


def write_images(folder: Path, task: str, classes: list[str], rng, *, per_class: int) -> None:
    for label in classes:
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            clip_image(task, label, rng).save(folder / label / f"{index}.png")


def write_configs(root: Path) -> None:
    """lm/eval.yaml and clip/eval.yaml: task arithmetic (lambda 0.5) evaluated per task."""
    lm = {task: f"data/{task}_choice.jsonl" for task in LM_TASKS}
    clip = {task: f"data/{task}" for task in CLIP_TASKS}
    for name, kind, data in (("lm", "causal_lm", lm), ("clip", "clip", clip)):
        models = "\n".join(f"  {task}: {task}" for task in data)
        lines = "\n".join(f"    {task}: {path}" for task, path in data.items())
        (root / name / "eval.yaml").write_text(
            f"base: base\nmodels:\n{models}\nmethod: task_arithmetic\n"
            "method_params: {scaling: 0.5}\ndevice: cpu\n"
            f"eval:\n  kind: {kind}\n  csv: merged.eval.csv\n  data:\n{lines}\n",
            encoding="utf-8",
        )


def main(root: str) -> None:
    folder = Path(root)
    write_lm_family(folder / "lm")
    write_clip_family(folder / "clip")
    write_configs(folder)
    print(f"wrote {folder}/lm and {folder}/clip; run: tadrop eval {folder}/lm/eval.yaml")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny_eval_family")
