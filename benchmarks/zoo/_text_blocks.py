"""What the language and sequence pairs share: token probes, rotary tables, masks and decoder layers.

The torch layers follow HuggingFace's modules (names, layouts and arithmetic); the MindSpore layers follow what
real MindSpore ports are built from (MindFormers' `Linear` with its `transpose_b` storage choice, `LlamaRMSNorm`,
`LlamaEmbedding`). Both compute in float32 with the same formulas, so a right mapping reproduces the torch
outputs to rounding error. Rotary tables and masks are computed once in numpy and handed to both frameworks.
The layer classes are built on first use, so that listing the zoo imports neither torch nor MindSpore.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

MASK_VALUE = -1e9  # additive mask for positions a query may not attend to; its exp() is 0 in float32


def token_ids(rng: np.random.Generator, batch: int, length: int, vocab: int) -> np.ndarray:
    """Random token ids the way torch embeddings take them (int64)."""
    return rng.integers(0, vocab, size=(batch, length), dtype=np.int64)


def int32_ids(inputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Integer inputs as int32, the index type MindSpore ports feed their embeddings; floats stay as they are."""
    return tuple(x.astype(np.int32) if np.issubdtype(x.dtype, np.integer) else x for x in inputs)


def causal_mask(length: int) -> np.ndarray:
    """[length, length] additive mask: 0 on and below the diagonal, MASK_VALUE above it."""
    return np.triu(np.full((length, length), MASK_VALUE, dtype=np.float32), k=1)


def rotary_tables(length: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """HuggingFace's rotary cos/sin tables, [length, head_dim] each (both halves repeat the frequencies)."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    freqs = np.outer(np.arange(length, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


@functools.cache
def torch_blocks() -> SimpleNamespace:
    """HuggingFace's layers: RMSNorm, LLaMA attention (q/k/v/o_proj) and MLP (gate/up/down_proj), GPT-2's Conv1D."""
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        """`LlamaRMSNorm`: one `weight`."""

        def __init__(self, dim: int, eps: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))
            self.variance_epsilon = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            variance = x.pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Scaled dot-product attention over [B, H, L, hd]; fewer k/v heads are repeated (grouped-query)."""
        if k.shape[1] != q.shape[1]:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / float(np.sqrt(q.shape[-1]))
        if mask is not None:
            scores = scores + mask
        return torch.matmul(torch.softmax(scores, dim=-1), v)

    class LlamaAttention(nn.Module):
        """`LlamaAttention` (Mixtral's too): q/k/v/o projections, rotary, grouped-query, causal."""

        def __init__(self, hidden: int, heads: int, kv_heads: int) -> None:
            super().__init__()
            self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
            self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=False)
            self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
            self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
            self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, length, _ = x.shape
            q = self.q_proj(x).view(b, length, self.heads, self.head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, length, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            return self.o_proj(attention(q, k, v, mask).transpose(1, 2).reshape(b, length, -1))

    class LlamaMLP(nn.Module):
        """`LlamaMLP`: down(silu(gate(x)) * up(x))."""

        def __init__(self, hidden: int, intermediate: int) -> None:
            super().__init__()
            self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
            self.up_proj = nn.Linear(hidden, intermediate, bias=False)
            self.down_proj = nn.Linear(intermediate, hidden, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    class Conv1D(nn.Module):
        """GPT-2's `Conv1D`: a linear layer whose weight is stored (in, out)."""

        def __init__(self, nf: int, nx: int) -> None:
            super().__init__()
            self.nf = nf
            self.weight = nn.Parameter(torch.empty(nx, nf))
            self.bias = nn.Parameter(torch.zeros(nf))
            nn.init.normal_(self.weight, std=0.02)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
            return out.view(*x.shape[:-1], self.nf)

    def tables(length: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cos, sin = rotary_tables(length, head_dim, theta)
        return torch.from_numpy(cos), torch.from_numpy(sin), torch.from_numpy(causal_mask(length))

    return SimpleNamespace(
        RMSNorm=RMSNorm,
        LlamaAttention=LlamaAttention,
        LlamaMLP=LlamaMLP,
        Conv1D=Conv1D,
        attention=attention,
        tables=tables,
    )


@functools.cache
def ms_blocks() -> SimpleNamespace:
    """MindSpore layers as ports name them: MindFormers' Linear, LlamaRMSNorm, LlamaEmbedding, LLaMA attention/MLP."""
    import mindspore
    from mindspore import Parameter, Tensor, nn, ops
    from mindspore.common.initializer import Normal, initializer

    class Linear(nn.Cell):
        """MindFormers' `Linear`: `weight` is (out, in) with `transpose_b=True` (its default), (in, out) without."""

        def __init__(self, in_channels: int, out_channels: int, *, has_bias: bool = True, transpose_b: bool = True):
            super().__init__()
            shape = [out_channels, in_channels] if transpose_b else [in_channels, out_channels]
            self.weight = Parameter(initializer(Normal(0.02), shape, mindspore.float32))
            self.has_bias = has_bias
            if has_bias:
                self.bias = Parameter(initializer("zeros", [out_channels], mindspore.float32))
            self.matmul = ops.MatMul(transpose_b=transpose_b)

        def construct(self, x: Any) -> Any:
            shape = x.shape
            out = self.matmul(x.reshape(-1, shape[-1]), self.weight)
            if self.has_bias:
                out = out + self.bias
            return out.reshape(*shape[:-1], out.shape[-1])

    class LlamaRMSNorm(nn.Cell):
        """MindFormers' `LlamaRMSNorm`: one `weight`."""

        def __init__(self, dim: int, eps: float) -> None:
            super().__init__()
            self.eps = eps
            self.weight = Parameter(initializer("ones", [dim], mindspore.float32))

        def construct(self, x: Any) -> Any:
            variance = ops.mean(ops.square(x), -1, keep_dims=True)
            return self.weight * (x * ops.rsqrt(variance + self.eps))

    class LlamaEmbedding(nn.Cell):
        """MindFormers' `LlamaEmbedding`: the table is a bare parameter called `embedding_weight`."""

        def __init__(self, vocab: int, dim: int) -> None:
            super().__init__()
            self.embedding_weight = Parameter(initializer(Normal(0.02), [vocab, dim], mindspore.float32))

        def construct(self, input_ids: Any) -> Any:
            return ops.gather(self.embedding_weight, input_ids, 0)

    def rotate_half(x: Any) -> Any:
        half = x.shape[-1] // 2
        return ops.cat((-x[..., half:], x[..., :half]), -1)

    def attention(q: Any, k: Any, v: Any, mask: Any | None) -> Any:
        """Scaled dot-product attention over [B, H, L, hd]; k/v heads tiled MindFormers' way for grouped-query."""
        if k.shape[1] != q.shape[1]:
            rep = q.shape[1] // k.shape[1]
            b, kv_heads, length, head_dim = k.shape
            k = ops.tile(k.reshape(b, kv_heads, 1, length * head_dim), (1, 1, rep, 1)).reshape(b, -1, length, head_dim)
            v = ops.tile(v.reshape(b, kv_heads, 1, length * head_dim), (1, 1, rep, 1)).reshape(b, -1, length, head_dim)
        scores = ops.matmul(q, k.swapaxes(-1, -2)) / float(np.sqrt(q.shape[-1]))
        if mask is not None:
            scores = scores + mask
        return ops.matmul(ops.softmax(scores, -1), v)

    class LLamaAttention(nn.Cell):
        """MindFormers' `LLamaAttention`: wq, wk, wv, then wo (all (out, in))."""

        def __init__(self, hidden: int, heads: int, kv_heads: int) -> None:
            super().__init__()
            self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
            self.wq = Linear(hidden, heads * self.head_dim, has_bias=False)
            self.wk = Linear(hidden, kv_heads * self.head_dim, has_bias=False)
            self.wv = Linear(hidden, kv_heads * self.head_dim, has_bias=False)
            self.wo = Linear(heads * self.head_dim, hidden, has_bias=False)

        def construct(self, x: Any, cos: Any, sin: Any, mask: Any) -> Any:
            b, length, _ = x.shape
            q = self.wq(x).reshape(b, length, self.heads, self.head_dim).swapaxes(1, 2)
            k = self.wk(x).reshape(b, length, self.kv_heads, self.head_dim).swapaxes(1, 2)
            v = self.wv(x).reshape(b, length, self.kv_heads, self.head_dim).swapaxes(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            return self.wo(attention(q, k, v, mask).swapaxes(1, 2).reshape(b, length, -1))

    class LlamaFeedForward(nn.Cell):
        """MindFormers' `LlamaFeedForward`: w2(silu(w1(x)) * w3(x)); w1 is the gate, w3 the up projection."""

        def __init__(self, hidden: int, intermediate: int) -> None:
            super().__init__()
            self.w1 = Linear(hidden, intermediate, has_bias=False)
            self.w2 = Linear(intermediate, hidden, has_bias=False)
            self.w3 = Linear(hidden, intermediate, has_bias=False)

        def construct(self, x: Any) -> Any:
            return self.w2(ops.silu(self.w1(x)) * self.w3(x))

    def tables(length: int, head_dim: int, theta: float) -> tuple[Any, Any, Any]:
        cos, sin = rotary_tables(length, head_dim, theta)
        return Tensor(cos), Tensor(sin), Tensor(causal_mask(length))

    return SimpleNamespace(
        Linear=Linear,
        LlamaRMSNorm=LlamaRMSNorm,
        LlamaEmbedding=LlamaEmbedding,
        LLamaAttention=LLamaAttention,
        LlamaFeedForward=LlamaFeedForward,
        attention=attention,
        tables=tables,
    )
