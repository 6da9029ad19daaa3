"""The global magnitude threshold's two passes read tau = theta_task - theta_base inside the C
kernel (``radix.abs_histogram``) on the CPU, and from the walk's task vectors elsewhere: both
give the drop counts of a stable sort of all |tau| (ties dropped in walk order), for fp32 and
bf16 checkpoints with a nonzero base; a NaN input is refused naming its file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tadrop.io.errors import CheckpointError
from tadrop.quantiles import native, radix
from tadrop.sparsify import global_scope
from tadrop.sparsify.magnitude import Magnitude
from tadrop.task_vectors import load_family

SHAPES = {"a.weight": (7, 11), "b.weight": (13,), "c.weight": (5, 5), "d.bias": (40,)}


def write_family(root, dtype, generator, poison=None):
    """A base of random values and two tasks whose deltas come from a small set (ties, zeros,
    neighbours one ulp apart); ``poison``: (task, tensor) given a NaN."""
    deltas = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0 + 2**-7, -1.0, 0.5, -3.0, 2.0**-9])
    base = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
    folders = {"base": base}
    for task in ("t0", "t1"):
        folders[task] = {
            name: base[name] + deltas[torch.randint(len(deltas), shape, generator=generator)]
            for name, shape in SHAPES.items()
        }
        folders[task]["c.weight"] = base["c.weight"].clone()  # a tensor of zeros only
    if poison:
        folders[poison[0]][poison[1]].view(-1)[3] = float("nan")
    for folder, state in folders.items():
        (root / folder).mkdir()
        save_file({k: v.to(dtype) for k, v in state.items()}, str(root / folder / "m.safetensors"))
    return load_family(root / "base", {task: root / task for task in ("t0", "t1")})


def sorted_drop_counts(family, density):
    """Per task: the drop count of each tensor from a stable sort of every |tau|."""
    expected = {}
    for task in family.task_names:
        taus = [
            (family.get_task_tensor(task, name).float() - family.base.get(name).float()).flatten()
            for name in family.tensor_names
        ]
        flat = torch.cat(taus).abs()
        n_drop = flat.numel() - round(density * flat.numel())
        owner = torch.cat([torch.full((t.numel(),), i) for i, t in enumerate(taus)])
        dropped = torch.sort(flat, stable=True).indices[:n_drop]
        counts = torch.bincount(owner[dropped], minlength=len(taus)).tolist()
        expected[task] = dict(zip(family.tensor_names, counts, strict=True))
    return expected


@pytest.fixture
def kernel_calls(monkeypatch):
    calls = {"count": 0}
    original = radix.abs_histogram

    def counted(*args, **kwargs):
        calls["count"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(radix, "abs_histogram", counted)
    return calls


@pytest.mark.skipif(native.load(native.FP32_PAIR) is None, reason="no C compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("density", [0.05, 0.3, 0.9])
def test_both_routes_give_the_drop_counts_of_a_stable_sort(
    tmp_path, monkeypatch, kernel_calls, dtype, density
):
    family = write_family(tmp_path, dtype, torch.Generator().manual_seed(11))
    expected = sorted_drop_counts(family, density)
    direct = Magnitude(density=density, scope="global").fit(family, device="cpu")._drop_counts
    assert kernel_calls["count"] == 2 * len(SHAPES) * 2  # two passes, tensors x tasks
    monkeypatch.setattr(radix, "supports_pair", lambda task, base: False)
    built = Magnitude(density=density, scope="global").fit(family, device="cpu")._drop_counts
    assert kernel_calls["count"] == 2 * len(SHAPES) * 2  # no more kernel calls
    assert direct == expected
    assert built == expected


def test_the_bucket_split_is_shared_by_both_routes():
    tau = torch.tensor([0.0, -1.5, 3.0, 2.0**-20, -(2.0**-20), 1.5])
    top, _ = global_scope._histogram_of_tau(tau, None)
    bucket = int(torch.tensor(1.5).view(torch.int32)) >> 15
    assert top[bucket] == 2 and top[0] == 1 and top.sum() == 6
    low, below = global_scope._histogram_of_tau(tau, bucket)
    assert below == 3 and low.sum() == 2  # 0 and the two 2^-20 lie below 1.5's bucket
    if native.load(native.FP32_PAIR) is not None:
        zeros = torch.zeros_like(tau)
        assert (radix.abs_histogram(tau, zeros)[0] == top).all()
        kernel_low, kernel_below = radix.abs_histogram(tau, zeros, bucket)
        assert (kernel_low == low).all() and kernel_below == below


@pytest.mark.skipif(native.load(native.FP32_PAIR) is None, reason="no C compiler")
def test_a_nan_in_a_task_is_refused_naming_its_file(tmp_path, kernel_calls):
    family = write_family(
        tmp_path, torch.float32, torch.Generator().manual_seed(2), poison=("t1", "b.weight")
    )
    with pytest.raises(CheckpointError, match=r"t1.*NaN|NaN.*t1"):
        Magnitude(density=0.2, scope="global").fit(family, device="cpu")
    assert kernel_calls["count"] > 0


@pytest.mark.skipif(native.load(native.BF16_PAIR) is None, reason="no C compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_tensors_counted_by_a_team_match_the_numpy_histogram(dtype):
    generator = torch.Generator().manual_seed(4)
    n = radix.TEAM_MIN_NUMEL + 12345
    base = torch.randn(n, generator=generator).to(dtype)
    task = (base.float() + torch.randn(n, generator=generator) * 0.01).to(dtype)
    task[::7] = base[::7]  # exact zeros in tau
    tau = task.float() - base.float()
    top, _ = radix.abs_histogram(task, base)
    assert (top == global_scope._histogram_of_tau(tau, None)[0]).all()
    bucket = int(top.argmax())
    low, below = radix.abs_histogram(task, base, bucket)
    expected_low, expected_below = global_scope._histogram_of_tau(tau, bucket)
    assert (low == expected_low).all() and below == expected_below
