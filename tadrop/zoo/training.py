"""Fine-tuning a backbone with a linear head, the linear probe, and accuracy.

Recipe: first fit a linear probe on the frozen pretrained features; it is the base model's
head. Then fine-tune every backbone tensor and a task head together with AdamW, linear
warm-up over the first 10% of steps and linear decay to zero. The head starts either at the
probe (LP-FT, Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features") or at zero.
Measured on the zoo's tasks with a few hundred examples: LP-FT is better for the text model
(a zero head loses up to 13 points), a zero head is better for the image model (+2 to +5
points), and dropout / stochastic depth only add noise to such short runs, so they are off.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tadrop.io.atomic import write_file_atomically
from tadrop.names import parse_name
from tadrop.zoo.backbones import Backbone, Encoded, batch_indices

EVAL_BATCH_SIZE = 128
HEAD_INITS = ("probe", "zero")


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int
    batch_size: int
    lr_backbone: float
    lr_head: float
    head_init: str = "probe"  # "probe" (LP-FT) or "zero"
    dropout: bool = False  # dropout / stochastic depth while training
    weight_decay: float = 0.01  # decoupled (AdamW), backbone only
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    adam_eps: float = 1e-8  # larger values make Adam SGD-like for small gradients (heavier tails)
    # (component kind from tadrop.names, learning-rate factor): some components trained more
    kind_lr: tuple[tuple[str, float], ...] = ()
    # (component kind, Adam eps): a large eps makes Adam SGD-like (heavy-tailed deltas) there
    kind_eps: tuple[tuple[str, float], ...] = ()
    # gradual unfreezing (ULMFiT): the top layer trains from step 0, the lowest layer (and the
    # tensors of no layer, e.g. embeddings) from this fraction of the steps; 0 = all at once
    unfreeze_fraction: float = 0.0
    # only the lowest this-many layers (and the tensors of no layer) unfreeze gradually, the
    # layers above train from step 0; None = every layer (ULMFiT)
    unfreeze_layers: int | None = None

    def __post_init__(self) -> None:
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init {self.head_init!r}: choose one of {HEAD_INITS}")
        if not 0 <= self.unfreeze_fraction < 1:
            raise ValueError(
                f"unfreeze_fraction {self.unfreeze_fraction!r}: choose a value in [0, 1) "
                "(0 trains every layer from the first step)"
            )


def _eval_order(encoded: Encoded) -> np.ndarray | None:
    """Texts sorted by length so each batch pads little; images in order."""
    if encoded.lengths is None:
        return None
    return np.argsort(encoded.lengths.numpy(), kind="stable")


@torch.inference_mode()
def extract_features(
    backbone: Backbone, module: torch.nn.Module, encoded: Encoded, batch_size: int = EVAL_BATCH_SIZE
) -> torch.Tensor:
    """(N, D) features of every example, in the original order."""
    module.eval()
    features = torch.empty(len(encoded), backbone.feature_dim)
    for indices in batch_indices(len(encoded), batch_size, order=_eval_order(encoded)):
        features[indices] = backbone.features(module, backbone.batch(encoded, indices)).float()
    return features


@torch.inference_mode()
def predict(
    backbone: Backbone,
    module: torch.nn.Module,
    head: torch.nn.Linear,
    encoded: Encoded,
    batch_size: int = EVAL_BATCH_SIZE,
) -> torch.Tensor:
    """(N,) predicted class of every example."""
    return head(extract_features(backbone, module, encoded, batch_size)).argmax(dim=1)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).double().mean())


PROBE_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
PROBE_VALIDATION_FRACTION = 0.2


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, n_classes: int, *, seed: int = 0
) -> torch.nn.Linear:
    """The best linear head on fixed features, its L2 penalty chosen on held-out examples.

    Each penalty in `PROBE_L2_GRID` is fitted on 80% of the examples and scored on the other
    20%; the best (the strongest penalty among ties) is refitted on all of them.
    """
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_val = max(1, int(len(labels) * PROBE_VALIDATION_FRACTION))
    val, fit = order[:n_val], order[n_val:]
    scores = []
    for l2 in PROBE_L2_GRID:
        head = fit_logistic_regression(features[fit], labels[fit], n_classes, l2=l2)
        with torch.no_grad():
            scores.append(accuracy(head(features[val]).argmax(dim=1), labels[val]))
    best = max(range(len(PROBE_L2_GRID)), key=lambda i: (scores[i], i))
    return fit_logistic_regression(features, labels, n_classes, l2=PROBE_L2_GRID[best])


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, n_classes: int, *, l2: float
) -> torch.nn.Linear:
    """Multinomial logistic regression on fixed features (full-batch L-BFGS, deterministic).

    Fitted on standardised features, minimising mean cross-entropy + l2 * ||W'||^2, then
    folded back so the head applies to raw features: W = W' / sigma, b = b' - W mu.
    """
    features = features.double()
    mean, std = features.mean(dim=0), features.std(dim=0).clamp(min=1e-6)
    standardized = (features - mean) / std
    weight = torch.zeros(n_classes, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=300, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def loss_closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = standardized @ weight.T + bias
        loss = F.cross_entropy(logits, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(loss_closure)
    head = torch.nn.Linear(features.shape[1], n_classes)
    with torch.no_grad():
        raw_weight = weight / std
        head.weight.copy_(raw_weight)
        head.bias.copy_(bias - raw_weight @ mean)
    return head


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def _backbone_groups(module: torch.nn.Module, settings: FinetuneSettings) -> list[dict]:
    """One AdamW parameter group per (learning-rate factor, eps) of `kind_lr` / `kind_eps`."""
    factors, epsilons = dict(settings.kind_lr), dict(settings.kind_eps)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        kind = parse_name(name).kind
        key = (factors.get(kind, 1.0), epsilons.get(kind, settings.adam_eps))
        groups.setdefault(key, []).append(parameter)
    return [
        {"params": params, "lr": settings.lr_backbone * factor, "eps": eps}
        for (factor, eps), params in sorted(groups.items())
    ]


def _unfreeze_steps(
    module: torch.nn.Module, fraction: float, total: int, layers: int | None = None
) -> list[tuple[torch.nn.Parameter, int]]:
    """(parameter, first step it trains) for parameters that start frozen (gradual unfreezing).

    The lowest of the `layers` gradually unfrozen layers (default: all) and the tensors of no
    layer (embeddings) start at `fraction` of the steps; the top one (and those above) at 0.
    """
    if fraction <= 0:
        return []
    named = [(p, parse_name(n).layer) for n, p in module.named_parameters()]
    count = 1 + max((layer for _, layer in named if layer is not None), default=0)
    top = count - 1 if layers is None else min(layers, count)  # layers >= top train from 0
    starts = []
    for parameter, layer in named:
        depth = _depth(layer, top, layers)
        start = int(fraction * depth * total)
        if start > 0:
            starts.append((parameter, start))
    return starts


def _depth(layer: int | None, top: int, layers: int | None) -> float:
    """0 for layers that train from the start .. 1 for the lowest layer and no-layer tensors."""
    if layer is None:
        return 1.0
    if top == 0:  # one layer: late under ULMFiT (layers=None), from the start for layers=0
        return 0.0 if layers == 0 else 1.0
    return max(0, top - layer) / top


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Where `finetune` saves its whole state every `every` steps, and resumes from.

    `key` says what is being trained (task, recipe, seed): a file with another key is ignored.
    Written to a temporary name and renamed, so an interrupt never leaves half a file.
    """

    path: Path
    key: str
    every: int = 16

    def load(self) -> dict[str, Any] | None:
        try:
            state = torch.load(self.path, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            return None
        return state if isinstance(state, dict) and state.get("key") == self.key else None

    def save(self, state: dict[str, Any]) -> None:
        write_file_atomically(self.path, lambda temp: torch.save({**state, "key": self.key}, temp))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _optimizer(
    module: torch.nn.Module, head: torch.nn.Linear, settings: FinetuneSettings
) -> torch.optim.AdamW:
    """AdamW over the backbone's per-component groups and the head (no decay on the head)."""
    return torch.optim.AdamW(
        [
            *_backbone_groups(module, settings),
            {"params": list(head.parameters()), "lr": settings.lr_head, "weight_decay": 0.0},
        ],
        weight_decay=settings.weight_decay,
        eps=settings.adam_eps,
    )


def _resume(parts: dict[str, Any], checkpoint: TrainingCheckpoint | None) -> list[float]:
    """Load a matching saved training state into ``parts``; the losses of the steps it covers."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return []
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    torch.set_rng_state(saved["rng"])
    return list(saved["losses"])


def finetune(
    backbone: Backbone,
    module: torch.nn.Module,
    head: torch.nn.Linear,
    train: Encoded,
    settings: FinetuneSettings,
    *,
    seed: int,
    on_step: Callable[[int, int, float], None] | None = None,
    checkpoint: TrainingCheckpoint | None = None,
) -> list[float]:
    """Train `module` (every tensor) and `head` in place on `train`; returns the step losses.

    `on_step(step, total_steps, loss)` is called after each optimiser step (progress bars,
    cancellation by raising). With `checkpoint`, the state is saved every `checkpoint.every`
    steps and a matching saved state is resumed from: the result equals an uninterrupted run
    (same batches, optimiser and scheduler state; same thread count for bitwise equality).
    """
    torch.manual_seed(seed)  # dropout and stochastic depth
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(train)) for _ in range(settings.epochs)]
    batches = [b for o in orders for b in batch_indices(len(train), settings.batch_size, order=o)]
    optimizer = _optimizer(module, head, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(len(batches), settings.warmup_fraction)
    )
    parts = {"module": module, "head": head, "optimizer": optimizer, "scheduler": scheduler}
    losses = _resume(parts, checkpoint)
    if settings.dropout:
        backbone.train_mode(module)
    else:
        module.eval()  # gradients still flow; dropout and stochastic depth are off
    head.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    starts = _unfreeze_steps(
        module, settings.unfreeze_fraction, len(batches), settings.unfreeze_layers
    )
    for indices in batches[len(losses) :]:
        logits = head(backbone.features(module, backbone.batch(train, indices)))
        loss = F.cross_entropy(logits, train.labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for parameter, start in starts:
            if len(losses) < start:
                parameter.grad = None  # still frozen: AdamW skips it (no decay either)
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if checkpoint is not None and len(losses) % checkpoint.every == 0:
            state = {name: part.state_dict() for name, part in parts.items()}
            checkpoint.save({**state, "rng": torch.get_rng_state(), "losses": losses})
        if on_step is not None:
            on_step(len(losses), len(batches), losses[-1])
    module.eval()
    head.eval()
    return losses
