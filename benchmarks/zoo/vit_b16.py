"""ViT-B/16: timm's VisionTransformer against mindcv's original ViT port.

torch side (timm): `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}`, `norm`, `head`.

MindSpore side (mindcv's first ViT): the model is a `BaseClassifier` of `backbone` and `head`; the backbone
names its tensors `cls_token`, `pos_embedding`, `patch_embedding.conv`, declares the final `norm` before the
encoder, and builds each encoder layer from anonymous cells:
`transformer.layers.N.0.cell.0` (LayerNorm), `transformer.layers.N.0.cell.1.{qkv, out}` (attention),
`transformer.layers.N.1.cell.0` (LayerNorm), `transformer.layers.N.1.cell.1.{dense1, dense2}` (feed-forward);
the classifier is `head.classifier`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.zoo import _vision_blocks as vb
from benchmarks.zoo._base import GroundTruth, Size, ZooPair

_DIM, _HEADS, _PATCH, _CLASSES, _EPS = 768, 12, 16, 1000, 1e-6
_DEPTH = {"ci": 2, "full": 12}
_IMAGE = {"ci": 32, "full": 224}


def _tokens(size: Size) -> int:
    return (_IMAGE[size] // _PATCH) ** 2 + 1


def _torch_model(size: Size) -> Any:
    return vb.torch_timm().VisionTransformer(_PATCH, _DIM, _HEADS, _DEPTH[size], _tokens(size), _CLASSES, _EPS)


def _mindspore_model(size: Size) -> Any:
    from mindspore import Parameter, Tensor, nn, ops

    class PatchEmbedding(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, _DIM, kernel_size=_PATCH, stride=_PATCH, pad_mode="pad", has_bias=True)

        def construct(self, x: Any) -> Any:
            x = self.conv(x)
            b, c, h, w = x.shape
            return ops.transpose(ops.reshape(x, (b, c, h * w)), (0, 2, 1))

    class Attention(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.num_heads = _HEADS
            self.scale = Tensor((_DIM // _HEADS) ** -0.5)
            self.qkv = nn.Dense(_DIM, _DIM * 3)
            self.out = nn.Dense(_DIM, _DIM)

        def construct(self, x: Any) -> Any:
            b, n, c = x.shape
            qkv = ops.reshape(self.qkv(x), (b, n, 3, self.num_heads, c // self.num_heads))
            q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), axis=0)
            attn = ops.softmax(ops.mul(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), self.scale), axis=-1)
            out = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (b, n, c))
            return self.out(out)

    class FeedForward(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.dense1 = nn.Dense(_DIM, _DIM * 4)
            self.activation = nn.GELU(approximate=False)
            self.dense2 = nn.Dense(_DIM * 4, _DIM)

        def construct(self, x: Any) -> Any:
            return self.dense2(self.activation(self.dense1(x)))

    class ResidualCell(nn.Cell):
        def __init__(self, cell: nn.Cell) -> None:
            super().__init__()
            self.cell = cell

        def construct(self, x: Any) -> Any:
            return self.cell(x) + x

    class TransformerEncoder(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            layers = [
                nn.SequentialCell(
                    [
                        ResidualCell(nn.SequentialCell([nn.LayerNorm((_DIM,), epsilon=_EPS), Attention()])),
                        ResidualCell(nn.SequentialCell([nn.LayerNorm((_DIM,), epsilon=_EPS), FeedForward()])),
                    ]
                )
                for _ in range(_DEPTH[size])
            ]
            self.layers = nn.SequentialCell(layers)

        def construct(self, x: Any) -> Any:
            return self.layers(x)

    class ViT(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embedding = PatchEmbedding()
            self.cls_token = Parameter(Tensor(np.zeros((1, 1, _DIM), np.float32)), name="cls")
            self.pos_embedding = Parameter(Tensor(np.zeros((1, _tokens(size), _DIM), np.float32)), name="pos_embedding")
            self.norm = nn.LayerNorm((_DIM,), epsilon=_EPS)
            self.transformer = TransformerEncoder()

        def construct(self, x: Any) -> Any:
            x = self.patch_embedding(x)
            cls_tokens = ops.tile(self.cls_token, (x.shape[0], 1, 1))
            x = ops.concat((cls_tokens, x), axis=1) + self.pos_embedding
            x = self.norm(self.transformer(x))
            return x[:, 0]

    class DenseHead(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = nn.Dense(_DIM, _CLASSES)

        def construct(self, x: Any) -> Any:
            return self.classifier(x)

    class BaseClassifier(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = ViT()
            self.head = DenseHead()

        def construct(self, x: Any) -> Any:
            return self.head(self.backbone(x))

    return BaseClassifier()


def _ground_truth(size: Size) -> GroundTruth:
    truth: GroundTruth = {
        "backbone.cls_token": "cls_token",
        "backbone.pos_embedding": "pos_embed",
        **vb.weight_bias("backbone.patch_embedding.conv", "patch_embed.proj"),
        **vb.layernorm("backbone.norm", "norm"),
    }
    for number in range(_DEPTH[size]):
        ms, pt = f"backbone.transformer.layers.{number}", f"blocks.{number}"
        truth.update(vb.layernorm(f"{ms}.0.cell.0", f"{pt}.norm1"))
        truth.update(vb.weight_bias(f"{ms}.0.cell.1.qkv", f"{pt}.attn.qkv"))
        truth.update(vb.weight_bias(f"{ms}.0.cell.1.out", f"{pt}.attn.proj"))
        truth.update(vb.layernorm(f"{ms}.1.cell.0", f"{pt}.norm2"))
        truth.update(vb.weight_bias(f"{ms}.1.cell.1.dense1", f"{pt}.mlp.fc1"))
        truth.update(vb.weight_bias(f"{ms}.1.cell.1.dense2", f"{pt}.mlp.fc2"))
    truth.update(vb.weight_bias("head.classifier", "head"))
    return truth


PAIR = ZooPair(
    name="vit_b16",
    title="ViT-B/16",
    torch_model=_torch_model,
    mindspore_model=_mindspore_model,
    ground_truth=_ground_truth,
    inputs=vb.square_images(_IMAGE),
    optimizer="adamw",
    rtol=1e-4,
    atol=5e-5,
    notes=(
        "mindcv's first ViT port: backbone./head. wrapper, positional cells (layers.N.0.cell.1.qkv) where timm "
        "has names (blocks.N.attn.qkv), pos_embedding/patch_embedding.conv/attention `out`/dense1/dense2, "
        "final norm declared before the encoder."
    ),
    tags=("vision", "transformer", "wrapper", "sequential"),
)
