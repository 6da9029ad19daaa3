"""tadrop's merges against mergekit, PEFT and FusionBench on one generated family.

Run with the peers' environment (``bench/peers/setup.sh`` makes it; torch stays the local one):

    bench/peers/.venv/bin/python bench/peers/conformance.py [--root /tmp/peers-family]

Each line is one method and preset: tadrop's merged model against the peer's, as the largest
absolute difference over every entry of every tensor. The peers run their own code: mergekit
its ``run_yaml`` command, PEFT its ``merge_utils`` functions per tensor and ``merge_and_unload``,
FusionBench its ``ties_merging``, ``emr_merge`` and ``task_arithmetic_merge``. Nothing of theirs
is reimplemented here. Not part of the test suite (it installs three toolkits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_family import SHAPES, make_family  # noqa: E402

from tadrop.io import open_checkpoint  # noqa: E402
from tadrop.merge import EMR, TIES, TaskArithmetic, run_merge  # noqa: E402
from tadrop.merge.ties import disjoint_merge, elect_signs  # noqa: E402
from tadrop.sparsify import DARE, Breadcrumbs, Magnitude  # noqa: E402
from tadrop.task_vectors import load_family  # noqa: E402

DENSITY, GAMMA, SCALING = 0.2, 0.01, 0.3
WEIGHTS = {"gauss": 1.0, "laplace": 0.5, "sparse": 2.0, "lowrank": 1.5}  # unequal on purpose
ROWS: list[dict[str, object]] = []


def report(method: str, peer: str, difference: float | None, note: str = "") -> None:
    row = {"method": method, "peer": peer, "max_abs_diff": difference, "note": note}
    ROWS.append(row)
    shown = "n/a" if difference is None else f"{difference:.2e}"
    print(f"{method:28s} {peer:13s} {shown:>9s}  {note}", flush=True)


def max_abs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    missing = set(ours) ^ set(theirs)
    if missing:
        raise SystemExit(f"tensor names differ: {sorted(missing)[:5]}")
    return max(float((ours[n].float() - theirs[n].float()).abs().max()) for n in ours)


def state(folder: Path) -> dict[str, torch.Tensor]:
    with open_checkpoint(folder) as checkpoint:
        return {name: checkpoint.get(name) for name in checkpoint.keys()}


# --- mergekit: its own command on the family's folders --------------------------------------


def mergekit(paths, work: Path, method: str, model_params: dict, shared: dict) -> dict:
    config = {
        "merge_method": method,
        "base_model": str(paths.base),
        "models": [
            {
                "model": str(folder),
                "parameters": {k: v(task) if callable(v) else v for k, v in model_params.items()},
            }
            for task, folder in paths.tasks.items()
        ],
        "parameters": shared,
        "dtype": "float32",
        "out_dtype": "float32",
    }
    config_path = work / f"mergekit-{method}.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = work / f"mergekit-{method}"
    command = [
        sys.executable, "-m", "mergekit.scripts.run_yaml", str(config_path), str(out),
        "--no-cuda", "--no-copy-tokenizer", "--no-write-model-card", "--quiet", "--allow-crimes",
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return state(out)


def run_mergekit(paths, family, work: Path) -> None:
    weight = lambda task: WEIGHTS[task]  # noqa: E731
    theirs = mergekit(paths, work, "task_arithmetic", {"weight": weight}, {"lambda": SCALING})
    ours = run_merge(family, TaskArithmetic(scaling=SCALING, weights=WEIGHTS), device="cpu")
    report("task_arithmetic (weighted)", "mergekit", max_abs(ours.model_for(), theirs))
    for normalize, divisor in ((True, "weight_sum"), (False, "sum")):
        theirs = mergekit(
            paths, work, "ties", {"weight": weight, "density": DENSITY}, {"normalize": normalize}
        )
        if normalize:
            method = TIES(compat="mergekit", weights=WEIGHTS)
        else:  # mergekit's rules with its normalize off: no division
            method = TIES(weights=WEIGHTS, zero_sign="positive", divisor=divisor)
        trim = Magnitude(density=DENSITY, compat="mergekit")
        ours = run_merge(family, method, trim, device="cpu")
        report(
            f"ties compat=mergekit{'' if normalize else ', normalize off'}",
            "mergekit",
            max_abs(ours.model_for(), theirs),
            f"weights {list(WEIGHTS.values())}, density {DENSITY}",
        )
        if normalize:  # the same merge under tadrop's own defaults, to show what compat changes
            own = run_merge(family, TIES(weights=WEIGHTS), device="cpu")
            note = "tadrop's defaults (global round trim, tensor majority, mean): differs"
            report("ties (tadrop defaults)", "mergekit", max_abs(own.model_for(), theirs), note)
    theirs = mergekit(
        paths, work, "breadcrumbs", {"weight": 1.0, "density": DENSITY, "gamma": GAMMA}, {}
    )
    for count in ("floor", "round"):
        ours = run_merge(
            family,
            TaskArithmetic(scaling=1.0),
            Breadcrumbs(density=DENSITY, gamma=GAMMA, count=count),
            device="cpu",
        )
        note = (
            "mergekit's int() counts" if count == "floor" else "tadrop's default round(): differs"
        )
        report(f"breadcrumbs count={count}", "mergekit", max_abs(ours.model_for(), theirs), note)


# --- PEFT: its merge_utils functions, tensor by tensor -----------------------------------


def task_stacks(family):
    """(name, base, [tau_k]) per tensor, float32."""
    from tadrop.task_vectors import iter_task_vectors

    for tensor in iter_task_vectors(family, device="cpu"):
        yield tensor.name, tensor.base.clone(), [tau.clone() for tau in tensor.task_vectors]


def run_peft(family) -> None:
    from peft.utils import merge_utils

    weights = torch.tensor([WEIGHTS[task] for task in family.task_names])
    peft_ta, peft_ties, peft_frequency = {}, {}, {}
    for name, base, taus in task_stacks(family):
        peft_ta[name] = base + merge_utils.task_arithmetic(taus, weights)
        peft_ties[name] = base + merge_utils.ties(taus, weights, DENSITY)
        peft_frequency[name] = base + merge_utils.ties(taus, weights, DENSITY, "frequency")
    ours = run_merge(family, TaskArithmetic(scaling=1.0, weights=WEIGHTS), device="cpu")
    report("task_arithmetic (weighted)", "peft", max_abs(ours.model_for(), peft_ta))
    ours = run_merge(family, TIES(compat="peft", weights=WEIGHTS), device="cpu")
    note = f"weights {list(WEIGHTS.values())}, density {DENSITY}"
    report("ties compat=peft", "peft", max_abs(ours.model_for(), peft_ties), note)
    ours = run_merge(family, TIES(compat="peft", elect="count", weights=WEIGHTS), device="cpu")
    report("ties compat=peft elect=count", "peft", max_abs(ours.model_for(), peft_frequency), note)
    run_dare_semantics(family, merge_utils)


def run_dare_semantics(family, merge_utils) -> None:
    """DARE's random streams differ (PEFT and mergekit draw torch.bernoulli from torch's global
    generator; tadrop seeds each (task, tensor) with SHA-256), so merged models differ entry by
    entry. What can agree is the rule: on entries both keep, the kept value tau / density."""
    torch.manual_seed(0)
    worst, kept_ours, kept_theirs, total = 0.0, 0, 0, 0
    dare = DARE(density=1 - 0.9)
    for name, _, taus in task_stacks(family):
        for task, tau in zip(family.task_names, taus, strict=True):
            theirs = merge_utils.prune(tau, 1 - 0.9, "random", rescale=True)
            mask = dare.keep_mask(tau, name=name, task=task)
            ours = dare.apply(tau, mask, name=name, task=task)
            both = (theirs != 0) & mask
            if both.any():
                worst = max(worst, float((ours[both] - theirs[both]).abs().max()))
            nonzero = tau != 0  # a kept zero cannot be seen in the peer's output
            kept_ours += int((mask & nonzero).sum())
            kept_theirs += int((theirs != 0).sum())
            total += int(nonzero.sum())
    note = (
        f"random streams differ; on entries both keep. kept of non-zero: tadrop "
        f"{kept_ours / total:.4f}, peft {kept_theirs / total:.4f} (density 0.1)"
    )
    report("dare density=0.1 (rule)", "peft", worst, note)


# --- FusionBench: ties_merging, emr_merge, task_arithmetic_merge ------------------------------


def run_fusion_bench(family, paths) -> None:
    from fusion_bench.method.emr_merging.utils import emr_merge
    from fusion_bench.method.ties_merging.ties_merging_utils import (
        state_dict_to_vector,
        ties_merging,
        vector_to_state_dict,
    )
    from fusion_bench.utils.state_dict_arithmetic import (
        state_dict_add,
        state_dict_mul,
        state_dict_sub,
    )

    base = state(paths.base)
    tasks = {task: state(folder) for task, folder in paths.tasks.items()}

    # task_arithmetic_merge's steps with its own state-dict helpers (the function itself takes
    # nn.Modules and refuses a Parameter/Tensor mix in strict mode): sum_k (theta_k - theta_pre),
    # times lambda, plus theta_pre
    task_vector = None
    for weights in tasks.values():
        delta = state_dict_sub(weights, base)
        task_vector = delta if task_vector is None else state_dict_add(task_vector, delta)
    theirs = state_dict_add(base, state_dict_mul(task_vector, SCALING))
    ours = run_merge(family, TaskArithmetic(scaling=SCALING), device="cpu")
    report("task_arithmetic", "fusion_bench", max_abs(ours.model_for(), theirs))

    flat_base = state_dict_to_vector(base)
    flat = torch.vstack([state_dict_to_vector(t) for t in tasks.values()]) - flat_base
    for merge_func in ("sum", "mean"):
        merged_tv = ties_merging(flat, reset_thresh=DENSITY, merge_func=merge_func)
        theirs = vector_to_state_dict(flat_base + SCALING * merged_tv, base)
        if merge_func == "sum":
            method = TIES(compat="fusion_bench", scaling=SCALING)
        else:  # FusionBench's rules with merge_func mean
            method = TIES(scaling=SCALING, zero_sign="model_majority", divisor="mean")
        trim = Magnitude(density=DENSITY, compat="fusion_bench")
        ours = run_merge(family, method, trim, device="cpu")
        report(
            f"ties compat=fusion_bench{'' if merge_func == 'sum' else ', merge_func mean'}",
            "fusion_bench",
            max_abs(ours.model_for(), dict(theirs)),
            f"global threshold_ties trim, model-majority zero sign; density {DENSITY}",
        )

    vectors = [{n: t[n] - base[n] for n in base} for t in tasks.values()]
    unified, masks, rescalers = emr_merge(vectors)
    result = run_merge(family, EMR(), device="cpu")
    worst = 0.0
    for index, task in enumerate(family.task_names):
        theirs = {n: base[n] + unified[n] * masks[n][index] * rescalers[index] for n in base}
        worst = max(worst, max_abs(result.model_for(task), theirs))
    ratio = max(
        abs(result.rescalers[t] / float(rescalers[i]) - 1) for i, t in enumerate(family.task_names)
    )
    report("emr (task models)", "fusion_bench", worst, f"rescalers agree to {ratio:.1e} relative")


# --- PEFT LoRA: an adapter PEFT saves with its defaults, an embedding targeted ---------------


def run_lora(paths, work: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**json.loads((paths.base / "config.json").read_text()))
    model = LlamaForCausalLM(config)
    model.load_state_dict(state(paths.base), strict=False)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        init_lora_weights=False,  # random A and B, so the update is not zero
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(model, lora)
    adapter = work / "lora-adapter"
    peft_model.save_pretrained(adapter)  # PEFT's defaults: save_embedding_layers="auto"
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as file:
        stored = sorted(file.keys())
    merged = {n: t.detach() for n, t in peft_model.merge_and_unload().state_dict().items()}
    with open_checkpoint(paths.base) as base, open_checkpoint(adapter, base=base) as ours:
        tadrop_view = {n: ours.get(n) for n in ours.keys()}
    merged = {n: merged[n] for n in tadrop_view}  # drop buffers the base file does not hold
    base_layer = [key for key in stored if ".base_layer." in key]
    report(
        "lora (embedding targeted)",
        "peft",
        max_abs(tadrop_view, merged),
        f"adapter stores {base_layer or 'no base_layer key'}",
    )


# --- a tie-heavy family: every delta a multiple of 2^-12, so ties at the cut and exact zero
# sums are everywhere (the base is rounded to multiples of 2^-14, so base + delta is exact) ---


def quantized_family(paths, root: Path):
    import dataclasses
    import shutil

    from tadrop.io import write_checkpoint

    def rounded(values: torch.Tensor, step: float) -> torch.Tensor:
        return torch.round(values / step) * step

    base = {n: rounded(t, 2.0**-14) for n, t in state(paths.base).items()}
    folders = {}
    for task, folder in {"base": paths.base, **paths.tasks}.items():
        out = root / "quantized" / task
        if task == "base":
            tensors = base
        else:
            tensors = {
                n: base[n] + rounded(t - state(paths.base)[n], 2.0**-12)
                for n, t in state(folder).items()
            }
        if not out.exists():
            write_checkpoint(iter(tensors.items()), out)
            shutil.copy(paths.base / "config.json", out / "config.json")
        folders[task] = out
    base_folder = folders.pop("base")
    return dataclasses.replace(paths, base=base_folder, tasks=folders)


def differing(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> int:
    return sum(int((ours[n] != theirs[n]).sum()) for n in ours)


def run_quantized(paths, root: Path) -> None:
    from fusion_bench.method.ties_merging.ties_merging_utils import (
        state_dict_to_vector,
        ties_merging,
        vector_to_state_dict,
    )
    from mergekit import sparsify
    from peft.utils import merge_utils

    quantized = quantized_family(paths, root)
    family = load_family(quantized.base, quantized.tasks)
    work = root / "work-quantized"
    work.mkdir(parents=True, exist_ok=True)
    label = "ties compat={} [quantized]"
    weight = lambda task: WEIGHTS[task]  # noqa: E731
    theirs = mergekit(quantized, work, "ties", {"weight": weight, "density": DENSITY}, {})
    ours = run_merge(family, TIES(compat="mergekit", weights=WEIGHTS), device="cpu").model_for()
    weights = torch.tensor([WEIGHTS[task] for task in family.task_names])
    on_their_trim = {}  # tadrop's election and merge on mergekit's own trimmed tensors
    for name, base_tensor, taus in task_stacks(family):
        trimmed = torch.stack([sparsify.magnitude(tau, DENSITY) for tau in taus])
        voters = trimmed * weights.reshape((-1,) + (1,) * (trimmed.dim() - 1))
        signs = elect_signs(voters, "mass", "positive")
        merged = disjoint_merge(voters, signs, "weight_sum", weights, weighted=True)
        on_their_trim[name] = base_tensor + merged
    note = (
        f"{differing(ours, theirs)} entries differ: ties at the cut broken differently; on "
        f"mergekit's own trim: {max_abs(on_their_trim, theirs):.1e}"
    )
    report(label.format("mergekit"), "mergekit", max_abs(ours, theirs), note)
    theirs = {
        name: base + merge_utils.ties(taus, weights, DENSITY)
        for name, base, taus in task_stacks(family)
    }
    ours = run_merge(family, TIES(compat="peft", weights=WEIGHTS), device="cpu").model_for()
    # the same election and merge on PEFT's own trimmed tensors: what is left is the tie choice
    on_their_trim = {}
    for name, base_tensor, taus in task_stacks(family):
        trimmed = torch.stack([merge_utils.prune(tau, DENSITY, "magnitude") for tau in taus])
        signs = elect_signs(trimmed, "mass", "positive")
        on_their_trim[name] = base_tensor + disjoint_merge(trimmed, signs, "mean", weights)
    note = (
        f"{differing(ours, theirs)} entries differ: ties at the cut broken differently; on "
        f"PEFT's own trim: {max_abs(on_their_trim, theirs):.1e}"
    )
    report(label.format("peft"), "peft", max_abs(ours, theirs), note)
    base = state(quantized.base)
    flat_base = state_dict_to_vector(base)
    flat = torch.vstack([state_dict_to_vector(state(f)) for f in quantized.tasks.values()])
    merged_tv = ties_merging(flat - flat_base, reset_thresh=DENSITY, merge_func="sum")
    theirs = dict(vector_to_state_dict(flat_base + SCALING * merged_tv, base))
    ours = run_merge(family, TIES(compat="fusion_bench", scaling=SCALING), device="cpu").model_for()
    report(label.format("fusion_bench"), "fusion_bench", max_abs(ours, theirs), "every tie kept")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/tmp/tadrop-peers", help="family and outputs")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--only", action="append", help="mergekit, peft, fusion_bench, lora or quantized"
    )
    args = parser.parse_args(argv)
    root = Path(args.root)
    paths = make_family(root / "family", SHAPES["tiny"], dtype=torch.float32, log=lambda _: None)
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    family = load_family(paths.base, paths.tasks)
    print(f"family: tiny Llama, {family.total_params:,} parameters, tasks {family.task_names}")
    print(f"{'method':28s} {'peer':13s} {'max |diff|':>9s}  note")
    only = set(args.only or ["mergekit", "peft", "fusion_bench", "lora", "quantized"])
    runs = {
        "mergekit": lambda: run_mergekit(paths, family, work),
        "peft": lambda: run_peft(family),
        "fusion_bench": lambda: run_fusion_bench(family, paths),
        "lora": lambda: run_lora(paths, work),
        "quantized": lambda: run_quantized(paths, root),
    }
    for name, run in runs.items():
        if name in only:
            run()
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
