"""PEFT LoRA adapters read as full models: W = W0 + s * B @ A, s = alpha / r (rsLoRA: / sqrt r)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from io_fixtures import write_adapter
from safetensors.torch import save_file

from tadrop.io import CheckpointError, LoraCheckpoint, open_checkpoint

PREFIX = "base_model.model."


@pytest.fixture
def base(tmp_path):
    """A tiny base model folder: a linear layer, a Conv1D-style layer, an embedding, a conv."""
    folder = tmp_path / "base"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "model.layers.0.q_proj.weight": torch.randn(2, 2, generator=generator),  # (out, in)
        "model.layers.0.q_proj.bias": torch.randn(2, generator=generator),
        "model.layers.0.c_attn.weight": torch.randn(2, 3, generator=generator),  # Conv1D: (in, out)
        "model.embed_tokens.weight": torch.randn(5, 3, generator=generator),  # (vocab, dim)
        "model.conv.weight": torch.randn(4, 2, 3, 3, generator=generator),  # (out, in, kh, kw)
        "classifier.weight": torch.randn(3, 2, generator=generator),
    }
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    with open_checkpoint(folder) as checkpoint:
        yield checkpoint


A = torch.tensor([[1.0, 2.0]])  # (r=1, in=2)
B = torch.tensor([[3.0], [4.0]])  # (out=2, r=1)


def test_hand_computed_update_of_a_linear_layer(tmp_path, base):
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.layers.0.q_proj.lora_A.weight": A,
            f"{PREFIX}model.layers.0.q_proj.lora_B.weight": B,
        },
        r=1,
        lora_alpha=2,
    )
    checkpoint = open_checkpoint(adapter, base=base)
    assert isinstance(checkpoint, LoraCheckpoint)
    assert checkpoint.format == "peft-lora"
    assert checkpoint.keys() == base.keys()
    assert checkpoint.aux_dir == base.aux_dir
    name = "model.layers.0.q_proj.weight"
    expected_delta = torch.tensor([[6.0, 12.0], [8.0, 16.0]])  # 2 * [[3, 6], [4, 8]]
    torch.testing.assert_close(checkpoint.delta(name), expected_delta)
    torch.testing.assert_close(checkpoint.get(name), base.get(name) + expected_delta)
    assert checkpoint.adapted_keys == [name]
    for other in base.keys():
        if other != name:
            assert checkpoint.delta(other) is None
            assert torch.equal(checkpoint.get(other), base.get(other))


def test_rslora_scale_is_alpha_over_sqrt_r(tmp_path, base):
    lora_b = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 2.0]])  # (out=2, r=4)
    lora_a = torch.tensor([[1.0, 2.0], [0, 0], [0, 0], [3.0, 4.0]])  # (r=4, in=2)
    tensors = {
        f"{PREFIX}model.layers.0.q_proj.lora_A.weight": lora_a,
        f"{PREFIX}model.layers.0.q_proj.lora_B.weight": lora_b,
    }
    # B @ A = [[1, 2], [6, 8]]; alpha 8: rsLoRA scale 8 / sqrt(4) = 4, plain LoRA 8 / 4 = 2.
    rs = open_checkpoint(
        write_adapter(tmp_path / "rs", tensors, r=4, lora_alpha=8, use_rslora=True), base=base
    )
    plain = open_checkpoint(
        write_adapter(tmp_path / "plain", tensors, r=4, lora_alpha=8), base=base
    )
    name = "model.layers.0.q_proj.weight"
    torch.testing.assert_close(rs.delta(name), torch.tensor([[4.0, 8.0], [24.0, 32.0]]))
    torch.testing.assert_close(plain.delta(name), torch.tensor([[2.0, 4.0], [12.0, 16.0]]))


def test_fan_in_fan_out_transposes_the_update(tmp_path, base):
    lora_a = torch.tensor([[1.0, 0.0]])  # (r=1, in=2)
    lora_b = torch.tensor([[1.0], [2.0], [3.0]])  # (out=3, r=1)
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.layers.0.c_attn.lora_A.weight": lora_a,
            f"{PREFIX}model.layers.0.c_attn.lora_B.weight": lora_b,
        },
        r=1,
        lora_alpha=1,
        fan_in_fan_out=True,
    )
    checkpoint = open_checkpoint(adapter, base=base)
    expected = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # (B @ A)^T, shape (in, out)
    torch.testing.assert_close(checkpoint.delta("model.layers.0.c_attn.weight"), expected)


def test_embedding_update_is_transposed(tmp_path, base):
    lora_a = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0]])  # (r=1, vocab=5)
    lora_b = torch.tensor([[1.0], [0.0], [-1.0]])  # (dim=3, r=1)
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.embed_tokens.lora_embedding_A": lora_a,
            f"{PREFIX}model.embed_tokens.lora_embedding_B": lora_b,
        },
        r=1,
        lora_alpha=1,
    )
    delta = open_checkpoint(adapter, base=base).delta("model.embed_tokens.weight")
    expected = torch.zeros(5, 3)
    expected[0] = torch.tensor([1.0, 0.0, -1.0])
    expected[4] = torch.tensor([2.0, 0.0, -2.0])
    torch.testing.assert_close(delta, expected)


def test_peft_default_save_of_a_targeted_embedding(tmp_path, base):
    """PEFT's save_embedding_layers="auto" stores the embedding's own weight as
    <module>.base_layer.weight beside lora_embedding_A/B: the model is that weight + update."""
    lora_a = torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0]])  # (r=1, vocab=5)
    lora_b = torch.tensor([[1.0], [0.0], [-1.0]])  # (dim=3, r=1)
    stored = base.get("model.embed_tokens.weight").clone()
    stored[2] = 7.0  # a copy that differs from the base, to see which one is used
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.embed_tokens.base_layer.weight": stored,
            f"{PREFIX}model.embed_tokens.lora_embedding_A": lora_a,
            f"{PREFIX}model.embed_tokens.lora_embedding_B": lora_b,
        },
        r=1,
        lora_alpha=1,
    )
    checkpoint = open_checkpoint(adapter, base=base)
    # row 0 gets +[1, 0, -1], row 4 +[2, 0, -2] (the update s * (B A)^T), on the stored copy
    expected = stored.clone()
    expected[0] += torch.tensor([1.0, 0.0, -1.0])
    expected[4] += torch.tensor([2.0, 0.0, -2.0])
    torch.testing.assert_close(checkpoint.get("model.embed_tokens.weight"), expected)
    torch.testing.assert_close(
        checkpoint.delta("model.embed_tokens.weight"),
        expected - base.get("model.embed_tokens.weight"),
    )
    assert checkpoint.adapted_keys == ["model.embed_tokens.weight"]


def test_resized_embedding_base_layer_is_refused(tmp_path, base):
    adapter = write_adapter(
        tmp_path / "adapter", {f"{PREFIX}model.embed_tokens.base_layer.weight": torch.zeros(6, 3)}
    )
    with pytest.raises(CheckpointError, match="resized during fine-tuning"):
        open_checkpoint(adapter, base=base)


def test_conv_update_keeps_the_kernel_in_a(tmp_path, base):
    generator = torch.Generator().manual_seed(1)
    lora_a = torch.randn(2, 2, 3, 3, generator=generator)  # (r, in, kh, kw)
    lora_b = torch.randn(4, 2, 1, 1, generator=generator)  # (out, r, 1, 1)
    adapter = write_adapter(
        tmp_path / "adapter",
        {f"{PREFIX}model.conv.lora_A.weight": lora_a, f"{PREFIX}model.conv.lora_B.weight": lora_b},
        r=2,
        lora_alpha=4,
    )
    expected = 2.0 * torch.einsum("or,rikl->oikl", lora_b[:, :, 0, 0], lora_a)
    torch.testing.assert_close(
        open_checkpoint(adapter, base=base).delta("model.conv.weight"), expected
    )


def test_named_adapter_keys_and_model_prefix_difference(tmp_path, base):
    # ".default." in the name, and no "model." where the base has one
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}layers.0.q_proj.lora_A.default.weight": A,
            f"{PREFIX}layers.0.q_proj.lora_B.default.weight": B,
        },
        r=1,
        lora_alpha=1,
    )
    checkpoint = open_checkpoint(adapter, base=base)
    torch.testing.assert_close(checkpoint.delta("model.layers.0.q_proj.weight"), B @ A)


def test_rank_and_alpha_patterns(tmp_path, base):
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.layers.0.q_proj.lora_A.weight": A,
            f"{PREFIX}model.layers.0.q_proj.lora_B.weight": B,
        },
        r=8,
        lora_alpha=8,
        rank_pattern={"q_proj": 1},
        alpha_pattern={"layers.0.q_proj": 3},
    )
    delta = open_checkpoint(adapter, base=base).delta("model.layers.0.q_proj.weight")
    torch.testing.assert_close(delta, 3.0 * (B @ A))


def test_modules_to_save_and_trained_bias_replace_base_tensors(tmp_path, base):
    head = torch.full((3, 2), 7.0)
    bias = torch.full((2,), -1.0)
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}classifier.modules_to_save.default.weight": head,
            f"{PREFIX}model.layers.0.q_proj.bias": bias,
        },
        r=1,
    )
    checkpoint = open_checkpoint(adapter, base=base)
    assert torch.equal(checkpoint.get("classifier.weight"), head)
    assert torch.equal(checkpoint.get("model.layers.0.q_proj.bias"), bias)
    torch.testing.assert_close(
        checkpoint.delta("classifier.weight"), head - base.get("classifier.weight")
    )


def test_bin_adapter_and_base_dtype_kept(tmp_path):
    base_folder = tmp_path / "base"
    base_folder.mkdir()
    save_file(
        {"proj.weight": torch.zeros(2, 2, dtype=torch.bfloat16)}, base_folder / "model.safetensors"
    )
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 1, "lora_alpha": 1}))
    torch.save(
        {f"{PREFIX}proj.lora_A.weight": A, f"{PREFIX}proj.lora_B.weight": B},
        adapter / "adapter_model.bin",
    )
    checkpoint = open_checkpoint(adapter, base=open_checkpoint(base_folder))
    merged = checkpoint.get("proj.weight")
    assert merged.dtype == torch.bfloat16 and checkpoint.dtype("proj.weight") == torch.bfloat16
    assert torch.equal(merged, (B @ A).to(torch.bfloat16))


# --- errors -------------------------------------------------------------------------------------


def lora_pair(module="model.layers.0.q_proj"):
    return {f"{PREFIX}{module}.lora_A.weight": A, f"{PREFIX}{module}.lora_B.weight": B}


def test_adapter_without_base_says_how_to_pass_one(tmp_path):
    adapter = write_adapter(tmp_path / "adapter", lora_pair(), r=1)
    with pytest.raises(CheckpointError, match=r"PEFT adapter.*base=open_checkpoint.*'tiny-base'"):
        open_checkpoint(adapter)


def test_unmapped_adapter_keys_are_named(tmp_path, base):
    tensors = {**lora_pair(), **lora_pair("model.layers.9.k_proj")}
    adapter = write_adapter(tmp_path / "adapter", tensors, r=1)
    with pytest.raises(CheckpointError, match=r"2 adapter tensor\(s\).*layers\.9\.k_proj\.lora_A"):
        open_checkpoint(adapter, base=base)


def test_half_a_pair_is_an_error(tmp_path, base):
    adapter = write_adapter(
        tmp_path / "adapter", {f"{PREFIX}model.layers.0.q_proj.lora_A.weight": A}, r=1
    )
    with pytest.raises(CheckpointError, match="q_proj.lora_A.weight' has no matching lora_B"):
        open_checkpoint(adapter, base=base)


def test_rank_in_config_not_matching_the_tensors(tmp_path, base):
    adapter = write_adapter(tmp_path / "adapter", lora_pair(), r=4)
    with pytest.raises(CheckpointError, match=r"r=4 for 'model\.layers\.0\.q_proj'"):
        open_checkpoint(adapter, base=base)


def test_update_shape_not_matching_the_base(tmp_path, base):
    adapter = write_adapter(tmp_path / "adapter", lora_pair("model.layers.0.c_attn"), r=1)
    with pytest.raises(
        CheckpointError, match=r"'model\.layers\.0\.c_attn\.weight'.*fan_in_fan_out"
    ):
        open_checkpoint(adapter, base=base)


@pytest.mark.parametrize(
    ("config", "message"), [({"use_dora": True}, "DoRA"), ({"peft_type": "IA3"}, "'IA3'")]
)
def test_unsupported_adapter_kinds(tmp_path, base, config, message):
    adapter = write_adapter(tmp_path / "adapter", lora_pair(), r=1, **config)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(adapter, base=base)


def test_adapter_folder_without_weights(tmp_path, base):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="adapter_model.safetensors.*adapter_config.json"):
        open_checkpoint(folder, base=base)


def test_scale_formula_matches_for_generic_rank(tmp_path, base):
    generator = torch.Generator().manual_seed(2)
    lora_a, lora_b = torch.randn(3, 2, generator=generator), torch.randn(2, 3, generator=generator)
    adapter = write_adapter(
        tmp_path / "adapter",
        {
            f"{PREFIX}model.layers.0.q_proj.lora_A.weight": lora_a,
            f"{PREFIX}model.layers.0.q_proj.lora_B.weight": lora_b,
        },
        r=3,
        lora_alpha=5,
        use_rslora=True,
    )
    delta = open_checkpoint(adapter, base=base).delta("model.layers.0.q_proj.weight")
    torch.testing.assert_close(delta, 5 / math.sqrt(3) * lora_b @ lora_a)
