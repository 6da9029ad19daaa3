import pytest

from tadrop.names import component_group, parse_name

CASES = [
    ("encoder.layer.3.attention.self.query.weight", 3, "attn.q", "weight"),
    ("encoder.layer.3.attention.self.key.bias", 3, "attn.k", "bias"),
    ("encoder.layer.3.attention.output.dense.weight", 3, "attn.o", "weight"),
    ("encoder.layer.3.attention.output.LayerNorm.weight", 3, "norm", "weight"),
    ("encoder.layer.3.intermediate.dense.weight", 3, "mlp.up", "weight"),
    ("encoder.layer.3.output.dense.weight", 3, "mlp.down", "weight"),
    ("embeddings.word_embeddings.weight", None, "embedding", "weight"),
    ("model.layers.12.self_attn.q_proj.weight", 12, "attn.q", "weight"),
    ("model.layers.12.self_attn.o_proj.weight", 12, "attn.o", "weight"),
    ("model.layers.12.mlp.gate_proj.weight", 12, "mlp.gate", "weight"),
    ("model.layers.12.mlp.up_proj.weight", 12, "mlp.up", "weight"),
    ("model.layers.12.mlp.down_proj.weight", 12, "mlp.down", "weight"),
    ("model.layers.12.input_layernorm.weight", 12, "norm", "weight"),
    ("lm_head.weight", None, "head", "weight"),
    ("transformer.h.5.attn.c_attn.weight", 5, "attn.qkv", "weight"),
    ("transformer.h.5.attn.c_proj.weight", 5, "attn.o", "weight"),
    ("transformer.h.5.mlp.c_fc.weight", 5, "mlp.up", "weight"),
    ("transformer.h.5.mlp.c_proj.weight", 5, "mlp.down", "weight"),
    ("transformer.wte.weight", None, "embedding", "weight"),
    ("visual.transformer.resblocks.7.attn.in_proj_weight", 7, "attn.in_proj", "in_proj_weight"),
    ("visual.transformer.resblocks.7.attn.out_proj.weight", 7, "attn.o", "weight"),
    ("vision_model.encoder.layers.4.mlp.fc1.weight", 4, "mlp.up", "weight"),
    ("vision_model.encoder.layers.4.mlp.fc2.weight", 4, "mlp.down", "weight"),
    ("layer2.1.conv2.weight", 2, "conv", "weight"),
    ("layer2.1.bn2.weight", 2, "norm", "weight"),
    ("_blocks.4._depthwise_conv.weight", 4, "conv", "weight"),
    ("_conv_stem.weight", None, "conv", "weight"),
    ("fc.weight", None, "head", "weight"),
]


@pytest.mark.parametrize(("name", "layer", "kind", "param"), CASES)
def test_parse_name_families(name, layer, kind, param):
    parsed = parse_name(name)
    assert (parsed.layer, parsed.kind, parsed.param) == (layer, kind, param)


@pytest.mark.parametrize(
    "name", ["", "x", "...", "a.b.c.d.e.f", "layer.notanumber.w", "日本.weight"]
)
def test_unknown_names_never_fail(name):
    parsed = parse_name(name)
    assert parsed.kind in {"other", "head", "norm", "embedding", "conv"} or parsed.kind.startswith(
        ("attn", "mlp")
    )


def test_component_group():
    assert component_group("attn.q") == "attention"
    assert component_group("mlp.down") == "mlp"
    assert component_group("norm") == "norm"
