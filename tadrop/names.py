"""Layer index and component kind from a tensor name.

Covers the common families: BERT/MiniLM, ViT/CLIP (Hugging Face and open_clip names), GPT-2,
Llama/Mistral/Qwen, and CNNs (EfficientNet/ResNet). Unknown names fall back to kind ``other``;
parsing never fails.

Kinds: ``attn.q attn.k attn.v attn.o attn.in_proj attn.qkv mlp.up mlp.gate mlp.down norm
embedding head conv other``. ``param`` is the last name component (``weight``, ``bias`` ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = (
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.o",
    "attn.in_proj",
    "attn.qkv",
    "mlp.up",
    "mlp.gate",
    "mlp.down",
    "norm",
    "embedding",
    "head",
    "conv",
    "other",
)

# Checked in order; the first pattern found anywhere in the lower-cased name wins.
_KIND_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(^|\.)(q_proj|query|to_q|wq)(\.|$)", "attn.q"),
    (r"(^|\.)(k_proj|key|to_k|wk)(\.|$)", "attn.k"),
    (r"(^|\.)(v_proj|value|to_v|wv)(\.|$)", "attn.v"),
    (r"in_proj", "attn.in_proj"),
    (r"(^|\.)(c_attn|qkv|query_key_value|wqkv|w_pack)(\.|$)", "attn.qkv"),
    (
        r"(attn|attention)\.(o_proj|out_proj|c_proj|dense|proj|wo)(\.|$)"
        r"|attention\.output\.dense|(^|\.)o_proj(\.|$)",
        "attn.o",
    ),
    (r"(^|\.)(gate_proj|w1|gate)(\.|$)", "mlp.gate"),
    (
        r"(^|\.)(up_proj|c_fc|fc1|w3|intermediate\.dense|mlp\.fc1|lin1|dense_h_to_4h)(\.|$)"
        r"|(^|\.)intermediate\.dense",
        "mlp.up",
    ),
    (
        r"(^|\.)(down_proj|fc2|w2|lin2|dense_4h_to_h)(\.|$)"
        r"|mlp\.c_proj|output\.dense|mlp\.fc2",
        "mlp.down",
    ),
    (r"(norm|ln_|ln\d|layernorm|layer_norm|(^|\.)bn\d*(\.|$)|batchnorm|_bn\d*)", "norm"),
    (
        r"(embed|wte|wpe|tok_embeddings|position_embedding|token_type|patch_embed|cls_token)",
        "embedding",
    ),
    (r"(^|\.)(lm_head|classifier|head|heads|score|_?fc|pooler|logit_scale)(\.|$)", "head"),
    (r"(conv|downsample\.0|(^|\.)stem(\.|$)|_se_(reduce|expand)|depthwise)", "conv"),
)
_COMPILED = tuple((re.compile(pattern), kind) for pattern, kind in _KIND_PATTERNS)

# Layer index: the number after a container of blocks (layer.3, layers.3, h.3, blocks.3,
# resblocks.3, layer3 in ResNet, _blocks.3 in EfficientNet), first match wins.
_LAYER_PATTERN = re.compile(
    r"(?:^|\.)(?:layers?|h|blocks?|resblocks|_blocks|encoder\.layer|decoder\.layers|stages?)"
    r"\.(\d+)(?:\.|$)"
    r"|(?:^|\.)layer(\d+)(?:\.|$)"
)


@dataclass(frozen=True)
class TensorName:
    """What a tensor's name says about it."""

    name: str
    layer: int | None
    kind: str
    param: str


def parse_name(name: str) -> TensorName:
    """Layer index, component kind and parameter name of a tensor; never raises."""
    lowered = name.lower()
    param = lowered.rsplit(".", 1)[-1] if "." in lowered else lowered
    module_path = lowered.rsplit(".", 1)[0] if "." in lowered else ""
    kind = "other"
    for pattern, candidate in _COMPILED:
        if pattern.search(module_path) or pattern.search(param):
            kind = candidate
            break
    layer_match = _LAYER_PATTERN.search(lowered)
    layer = None
    if layer_match:
        layer = int(next(group for group in layer_match.groups() if group is not None))
    return TensorName(name=name, layer=layer, kind=kind, param=param)


def component_group(kind: str) -> str:
    """Coarse group of a kind: ``attention``, ``mlp`` or the kind itself."""
    if kind.startswith("attn."):
        return "attention"
    if kind.startswith("mlp."):
        return "mlp"
    return kind
