"""SASRec sequence encoder $f_\\theta$ (S4Rec Eq. 6), checkpoint-compatible with ICLRec.

The architecture, the parameter names and the initialisation follow the SASRec model of the
public S3-Rec / CoSeRec / ICLRec code (``src/models.py`` and ``src/modules.py`` there), so a
state dict trained with that code loads with ``SASRecEncoder.from_iclrec_state_dict`` and
gives the same outputs at real (non-padding) positions.

Letter legend: ``b`` batch, ``l`` sequence length, ``d`` hidden size, ``n`` items; inside the
attention ``h`` heads and ``e`` the head size ``d / h``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ._validation import (
    check_choice,
    check_float,
    check_int,
    check_integer,
    check_ndim,
    check_nonempty,
    check_positive,
    check_probability,
    check_range,
    check_tensor,
)

__all__ = ["SASRecEncoder", "sasrec_attention_mask"]

logger = logging.getLogger(__name__)

PADDING_ID = 0
"""Item id reserved for padding; the mask id is ``num_items + 1``."""
NUM_SPECIAL_ROWS = 2
"""Rows of the item table that are not items: padding (row 0) and the mask id (last row)."""
FFN_EXPANSION = 4
"""Width of the feed-forward layer as a multiple of the hidden size (``dense_1``: d -> 4d)."""
POOLINGS = ("last", "mean")
"""Allowed values of ``pooling`` in ``SASRecEncoder.represent``."""
NESTING_KEYS = ("model", "state_dict")
"""Keys under which a training checkpoint may nest the model's state dict."""
DATA_PARALLEL_PREFIX = "module."
"""Prefix that ``nn.DataParallel`` / DDP put in front of every key; stripped when on all keys."""

_EMBEDDING_KEYS = (
    "item_embeddings.weight",
    "position_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
)
_LAYER_PREFIX = "item_encoder.layer."


def sasrec_attention_mask(item_ids: Tensor) -> Tensor:
    r"""Boolean self-attention mask of SASRec: causal and key padding, empty rows see themselves.

    Key $j$ is visible to query $i$ iff $j \le i$ and
    $\text{item\_ids}[j] \ne 0$. A query whose visible set would be empty (a padding
    position with only padding before it) is given its own key instead, so that
    ``scaled_dot_product_attention`` never normalises an empty row into NaN. Real queries always
    see their own key, so for them the diagonal changes nothing.

    Args:
        item_ids: item ids, 0 for padding.

    Shape:
        - item_ids: $(b, l)$, integer.
        - output: $(b, l, l)$, bool, ``True`` where query (row) may attend to key (column).

    Returns:
        The mask, on the device of ``item_ids``.

    Examples:
        >>> import torch
        >>> from s4rec_components.encoder import sasrec_attention_mask
        >>> sasrec_attention_mask(torch.tensor([[0, 3, 5]])).int()
        tensor([[[1, 0, 0],
                 [0, 1, 0],
                 [0, 1, 1]]], dtype=torch.int32)
    """
    length = item_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=item_ids.device).tril()
    real_keys = rearrange(item_ids != PADDING_ID, "b l -> b 1 l")
    diagonal = torch.eye(length, dtype=torch.bool, device=item_ids.device)
    return (causal & real_keys) | diagonal


ATTENTION_SPANS = (4, 8, 16, 32)
"""Bucket widths for attention over real tokens: a row whose real items span ``s`` positions
is attended in the narrowest bucket ``>= s`` (the full length beyond the last one)."""


class _Bucket(NamedTuple):
    rows: int  # rows of the batch in this bucket
    span: int  # right-most positions kept for them
    tokens: Tensor  # (m_b,) indices into the packed tokens
    grid_index: Tensor  # (m_b,) flat positions of those tokens in the (rows, span) grid
    mask: Tensor  # (rows, 1, span, span) bool attention mask


class _PackedLayout(NamedTuple):
    index: Tensor  # (m,) flat positions of the real tokens in the (b, l) input
    buckets: list[_Bucket]


def _packed_layout(item_ids: Tensor) -> _PackedLayout:
    """Where the real tokens of ``item_ids`` (b, l) go, grouped by how far left they reach.

    A row's span is ``l`` minus the column of its first non-padding id; positions left of it
    are padding, which is masked out for every real query, so attention restricted to the
    right-most ``span`` columns gives the same result at real positions.
    """
    b, l = item_ids.shape
    real = item_ids != PADDING_ID
    index = rearrange(real, "b l -> (b l)").nonzero().squeeze(1)
    first = torch.where(real.any(1), real.int().argmax(1), l)  # column of the first real id
    spans = l - first  # (b,), 0 for all-padding rows
    row_of_token = index // l
    col_of_token = index % l
    widths = [w for w in ATTENTION_SPANS if w < l] + [l]
    buckets = []
    lower = 0
    for width in widths:
        in_bucket = (spans > lower) & (spans <= width)  # (b,)
        lower = width
        rows = int(in_bucket.sum())
        if rows == 0:
            continue
        rank = torch.cumsum(in_bucket.long(), 0) - 1  # position of each row inside the bucket
        tokens = in_bucket[row_of_token].nonzero().squeeze(1)
        r, c = row_of_token[tokens], col_of_token[tokens]
        grid_index = rank[r] * width + (c - (l - width))
        mask = sasrec_attention_mask(item_ids[in_bucket, l - width :])
        buckets.append(_Bucket(rows, width, tokens, grid_index, rearrange(mask, "b i j -> b 1 i j")))
    return _PackedLayout(index, buckets)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with a post-LN residual (ICLRec ``SelfAttention``)."""

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, attention_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)  # noqa: N815 (checkpoint key name)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x``: (b, l, d); ``mask``: (b, 1, l, l) bool. Returns (b, l, d)."""
        q, k, v = (
            rearrange(proj(x), "b l (h e) -> b h l e", h=self.num_heads)
            for proj in (self.query, self.key, self.value)
        )
        p = self.attention_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        context = rearrange(context, "b h l e -> b l (h e)")
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)

    def forward_packed(self, x: Tensor, layout: _PackedLayout) -> Tensor:
        """The same block on the m real tokens only; ``x``: (m, d). Returns (m, d).

        Query, key and value of the m tokens come from one matmul; for each length bucket of
        ``layout`` they are scattered into a zero ``(rows, span)`` grid holding only the
        right-most ``span`` positions of those rows (everything left of it is padding, which
        no real query may see), attended there, and gathered back. The output projection,
        residual and LayerNorm run on the m tokens again.
        """
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        qkv = F.linear(x, weight, bias)  # (m, 3d)
        p = self.attention_dropout if self.training else 0.0
        context = x.new_zeros(x.shape)
        for bucket in layout.buckets:
            grid = qkv.new_zeros(bucket.rows * bucket.span, qkv.shape[1])
            grid = grid.index_copy(0, bucket.grid_index, qkv.index_select(0, bucket.tokens))
            q, k, v = rearrange(
                grid, "(b l) (t h e) -> t b h l e", l=bucket.span, t=3, h=self.num_heads
            )
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bucket.mask, dropout_p=p)
            out = rearrange(out, "b h l e -> (b l) (h e)").index_select(0, bucket.grid_index)
            context = context.index_copy(0, bucket.tokens, out)
        return self.LayerNorm(self.out_dropout(self.dense(context)) + x)


class _FeedForward(nn.Module):
    """Position-wise feed-forward, exact GELU, post-LN residual (ICLRec ``Intermediate``)."""

    def __init__(self, hidden_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, FFN_EXPANSION * hidden_size)
        self.dense_2 = nn.Linear(FFN_EXPANSION * hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)  # noqa: N815 (checkpoint key name)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (b, l, d). Returns (b, l, d)."""
        hidden = self.dense_2(F.gelu(self.dense_1(x), approximate="none"))
        return self.LayerNorm(self.dropout(hidden) + x)


class _Layer(nn.Module):
    """One transformer block: attention then feed-forward (ICLRec ``Layer``)."""

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, attention_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.attention = _SelfAttention(hidden_size, num_heads, dropout, attention_dropout, eps)
        self.intermediate = _FeedForward(hidden_size, dropout, eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.intermediate(self.attention(x, mask))

    def forward_packed(self, x: Tensor, layout: _PackedLayout) -> Tensor:
        """``x``: (m, d) real tokens only; see ``_SelfAttention.forward_packed``."""
        return self.intermediate(self.attention.forward_packed(x, layout))


class _Encoder(nn.Module):
    """The stack of blocks, held in ``layer`` as in ICLRec's ``Encoder``."""

    def __init__(self, layers: list[_Layer]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)



def _layer_shapes(d: int) -> dict[str, tuple[int, ...]]:
    """Expected shape of every per-layer tensor, keyed by its name under ``layer.N.``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("query", "key", "value", "dense"):
        shapes[f"attention.{name}.weight"] = (d, d)
        shapes[f"attention.{name}.bias"] = (d,)
    for norm in ("attention.LayerNorm", "intermediate.LayerNorm"):
        shapes[f"{norm}.weight"] = (d,)
        shapes[f"{norm}.bias"] = (d,)
    shapes["intermediate.dense_1.weight"] = (FFN_EXPANSION * d, d)
    shapes["intermediate.dense_1.bias"] = (FFN_EXPANSION * d,)
    shapes["intermediate.dense_2.weight"] = (d, FFN_EXPANSION * d)
    shapes["intermediate.dense_2.bias"] = (d,)
    return shapes


def _describe(value: object) -> str:
    """Shape of a tensor, or the type of anything else, for error messages."""
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _unwrap_state_dict(state_dict: object) -> Mapping[str, Tensor]:
    """Accept a flat state dict, one nested under "model"/"state_dict", or a DataParallel one."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}"
        )
    flat_keys = ("item_embeddings.weight", f"{DATA_PARALLEL_PREFIX}item_embeddings.weight")
    if not any(key in state_dict for key in flat_keys):
        for key in NESTING_KEYS:
            if isinstance(state_dict.get(key), Mapping):
                state_dict = state_dict[key]
                break
    if state_dict and all(str(key).startswith(DATA_PARALLEL_PREFIX) for key in state_dict):
        state_dict = {key[len(DATA_PARALLEL_PREFIX) :]: value for key, value in state_dict.items()}
    return state_dict


class SASRecEncoder(nn.Module):
    r"""SASRec sequence encoder $\mathbf{z}_u = f_\theta(\mathcal{S}_u)$ (S4Rec Eq. 6).

    Self-attentive sequential recommendation (Kang & McAuley, 2018) in the form of the public
    S3-Rec / CoSeRec / ICLRec code: item plus learned absolute position embeddings (positions
    $0..l-1$ counted from the left of the input),

    $$
    X^{(0)} = \operatorname{Dropout}(\operatorname{LN}(E_{\text{item}}[s] + E_{\text{pos}}))
    $$

    then ``num_layers`` post-LN blocks

    $$
    A = \operatorname{LN}\big(X + \operatorname{Dropout}(W_o\,
        \operatorname{softmax}(Q K^\top / \sqrt{d/h} \,|\, M)\, V)\big), \qquad
    X' = \operatorname{LN}\big(A + \operatorname{Dropout}(W_2\,\operatorname{GELU}(W_1 A))\big)
    $$

    with exact (erf) GELU and the attention mask $M$ of ``sasrec_attention_mask``:
    key $j$ is visible to query $i$ iff $j \le i$ and item $j$ is not
    padding. The public code adds $-10^4$ to masked scores; here a boolean mask goes to
    ``scaled_dot_product_attention``, which agrees to float precision at real positions.
    Padding queries with no visible key attend to themselves instead of producing NaN; their
    outputs are placeholders and never influence real positions.

    Item ids: ``0`` is padding, ``1..num_items`` are items and ``num_items + 1`` is the mask id
    (used by masking augmentations), so the item table has ``num_items + 2`` rows. Sequences are
    expected left-padded (most recent item last) for ``represent(pooling="last")``. Weights are
    initialised as in that code: Linear / Embedding weights $\mathcal{N}(0, 0.02^2)$
    (including the padding row), biases 0, LayerNorm 1 / 0. Submodules carry that code's names,
    so ``to_iclrec_state_dict`` and ``from_iclrec_state_dict`` are identity mappings.

    Args:
        num_items: number of real items ``n`` (ids ``1..n``). Must be >= 1.
        hidden_size: embedding size ``d``. Must be >= 1 and divisible by ``num_heads``.
        num_layers: number of transformer blocks. Must be >= 1.
        num_heads: attention heads ``h``. Must be >= 1.
        max_len: longest input sequence (rows of the position table). Must be >= 1.
        dropout: dropout of the embeddings and of both residual branches, in [0, 1].
        attention_dropout: dropout of the attention weights, in [0, 1]; ``None`` uses
            ``dropout``.
        layer_norm_eps: LayerNorm epsilon. Must be > 0.
        initializer_range: standard deviation of the normal initialisation. Must be > 0.
        skip_padding: compute only real tokens and return zeros at padding positions: the
            position-wise parts (projections, feed-forward, LayerNorm) run on the real tokens
            alone, and attention runs per length bucket on the right-most positions that hold
            real items. Outputs at real positions are the same either way; on short-history
            data (Beauty: ~11% of the 50 positions are real) this is several times faster.
            ``False`` computes every position, padding included (placeholders there), with
            static shapes.

    Shape:
        - item_ids: $(b, l)$, integer, $1 \le l \le$ ``max_len``, ids in
          $[0, n + 1]$.
        - output: $(b, l, d)$, in the parameters' dtype.

    Raises:
        TypeError: if an integer argument is not an int, or ``item_ids`` is not an integer tensor.
        ValueError: if a hyper-parameter is out of range, or ``item_ids`` is not 2-D, is empty,
            is longer than ``max_len`` or holds ids outside $[0, n + 1]$.

    Examples:
        >>> import torch
        >>> from s4rec_components import SASRecEncoder
        >>> _ = torch.manual_seed(0)
        >>> encoder = SASRecEncoder(num_items=10, hidden_size=8, max_len=5).eval()
        >>> ids = torch.tensor([[0, 0, 3, 7, 2], [1, 2, 3, 4, 11]])
        >>> hidden = encoder(ids)
        >>> hidden.shape
        torch.Size([2, 5, 8])
        >>> encoder.represent(ids, hidden=hidden).shape, encoder.score_items(hidden).shape
        (torch.Size([2, 8]), torch.Size([2, 5, 11]))
        >>> encoder.mask_id, encoder.num_items, encoder.hidden_size, encoder.max_len
        (11, 10, 8, 5)
    """

    def __init__(
        self,
        num_items: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        attention_dropout: float | None = None,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        skip_padding: bool = True,
    ) -> None:
        super().__init__()
        check_int(num_items, "num_items", 1)
        check_int(hidden_size, "hidden_size", 1)
        check_int(num_layers, "num_layers", 1)
        check_int(num_heads, "num_heads", 1)
        check_int(max_len, "max_len", 1)
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"hidden_size must be divisible by num_heads, got hidden_size={hidden_size}, "
                f"num_heads={num_heads}"
            )
        check_probability(dropout, "dropout")
        if attention_dropout is None:
            attention_dropout = dropout
        check_probability(attention_dropout, "attention_dropout")
        check_positive(layer_norm_eps, "layer_norm_eps")
        check_positive(initializer_range, "initializer_range")

        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout_rate = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.initializer_range = float(initializer_range)
        self.skip_padding = bool(skip_padding)

        self.item_embeddings = nn.Embedding(
            num_items + NUM_SPECIAL_ROWS, hidden_size, padding_idx=PADDING_ID
        )
        self.position_embeddings = nn.Embedding(max_len, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)  # noqa: N815
        self.dropout = nn.Dropout(dropout)
        self.item_encoder = _Encoder(
            [
                _Layer(hidden_size, num_heads, dropout, self.attention_dropout, layer_norm_eps)
                for _ in range(num_layers)
            ]
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise as the public code: N(0, range) weights, zero biases, LayerNorm 1 / 0."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_items(self) -> int:
        """Number of real items ``n``; ids ``1..n``."""
        return self.item_embeddings.num_embeddings - NUM_SPECIAL_ROWS

    @property
    def mask_id(self) -> int:
        """Id of the mask token, ``num_items + 1``."""
        return self.num_items + 1

    @property
    def hidden_size(self) -> int:
        """Hidden size ``d``."""
        return self.item_embeddings.embedding_dim

    @property
    def max_len(self) -> int:
        """Longest sequence the position table covers."""
        return self.position_embeddings.num_embeddings

    def _check_item_ids(self, item_ids: Tensor) -> None:
        check_ndim(item_ids, 2, "item_ids", "(b, l)")
        check_integer(item_ids, "item_ids")
        check_nonempty(item_ids, "item_ids")
        if item_ids.shape[1] > self.max_len:
            raise ValueError(
                f"item_ids must have at most max_len={self.max_len} positions, got shape "
                f"{tuple(item_ids.shape)}"
            )
        check_range(item_ids, PADDING_ID, self.mask_id, "item_ids")

    def forward(self, item_ids: Tensor) -> Tensor:
        """Encode a batch of item sequences; see the class docstring."""
        self._check_item_ids(item_ids)
        if self.skip_padding:
            return self._forward_real_tokens(item_ids)
        mask = rearrange(sasrec_attention_mask(item_ids), "b l m -> b 1 l m")  # shared by heads
        positions = torch.arange(item_ids.shape[1], device=item_ids.device)
        x = self.item_embeddings(item_ids) + self.position_embeddings(positions)
        x = self.dropout(self.LayerNorm(x))
        for layer in self.item_encoder.layer:
            x = layer(x, mask)
        return x

    def _forward_real_tokens(self, item_ids: Tensor) -> Tensor:
        """Forward pass over the m real tokens only; zeros at padding positions."""
        b, l = item_ids.shape
        layout = _packed_layout(item_ids)
        index = layout.index  # (m,) flat positions of the real tokens
        x = self.item_embeddings(item_ids.flatten()[index]) + self.position_embeddings(index % l)
        x = self.dropout(self.LayerNorm(x))  # (m, d)
        for layer in self.item_encoder.layer:
            x = layer.forward_packed(x, layout)
        out = x.new_zeros(b * l, x.shape[1]).index_copy(0, index, x)
        return rearrange(out, "(b l) d -> b l d", b=b)

    def represent(
        self,
        item_ids: Tensor,
        pooling: Literal["last", "mean"] = "last",
        hidden: Tensor | None = None,
    ) -> Tensor:
        r"""Pool the encoder output into one vector per sequence, $\mathbf{z}_u$.

        ``"last"`` takes the output at position $l - 1$ (the most recent real item of a
        left-padded sequence); ``"mean"`` averages the outputs over real (non-padding) positions,
        giving zeros for a sequence that is all padding.

        Args:
            item_ids: item ids, 0 for padding.
            pooling: ``"last"`` or ``"mean"``.
            hidden: the already computed ``self(item_ids)``; computed here when ``None``.

        Shape:
            - item_ids: $(b, l)$.
            - hidden: $(b, l, d)$.
            - output: $(b, d)$.

        Returns:
            The pooled representations.

        Raises:
            ValueError: for an unknown ``pooling``, bad ``item_ids`` or a ``hidden`` whose shape
                is not ``(b, l, d)``.
            TypeError: if ``hidden`` is not a floating-point tensor.

        Examples:
            >>> import torch
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(num_items=5, hidden_size=4, max_len=3).eval()
            >>> ids = torch.tensor([[0, 0, 0], [0, 2, 3]])
            >>> z = encoder.represent(ids, pooling="mean")
            >>> z.shape, bool((z[0] == 0).all())
            (torch.Size([2, 4]), True)
        """
        check_choice(pooling, POOLINGS, "pooling")
        if hidden is None:
            hidden = self(item_ids)
        else:
            self._check_item_ids(item_ids)
            check_ndim(hidden, 3, "hidden", "(b, l, d)")
            check_float(hidden, "hidden")
            expected = (*item_ids.shape, self.hidden_size)
            if tuple(hidden.shape) != expected:
                raise ValueError(
                    f"hidden must have shape (b, l, d) = {expected} to match item_ids, got shape "
                    f"{tuple(hidden.shape)}"
                )
        if pooling == "last":
            return hidden[:, -1]
        real = rearrange(item_ids != PADDING_ID, "b l -> b l 1").to(hidden.dtype)
        count = real.sum(dim=1).clamp(min=1)
        return (hidden * real).sum(dim=1) / count

    def score_items(self, h: Tensor) -> Tensor:
        r"""Dot-product scores of representations against every item id, $h E^\top$.

        Column $i$ is the score of item id $i$ for $i = 0..n$. Column 0 is the
        padding id and is NOT masked here: callers ranking items should set it to ``-inf``. The
        mask id $n + 1$ is excluded.

        Args:
            h: representations, e.g. from ``represent`` or the full encoder output.

        Shape:
            - h: $(\ldots, d)$.
            - output: $(\ldots, n + 1)$.

        Returns:
            The scores.

        Raises:
            TypeError: if ``h`` is not a floating-point tensor.
            ValueError: if the last dimension of ``h`` is not ``d``.

        Examples:
            >>> import torch
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(num_items=5, hidden_size=4, max_len=3)
            >>> encoder.score_items(torch.randn(2, 4)).shape
            torch.Size([2, 6])
        """
        check_tensor(h, "h")
        check_float(h, "h")
        if h.ndim == 0 or h.shape[-1] != self.hidden_size:
            raise ValueError(
                f"h must have shape (..., d) with d = {self.hidden_size}, "
                f"got shape {tuple(h.shape)}"
            )
        table = self.item_embeddings.weight[: self.num_items + 1]
        return h @ table.T

    def to_iclrec_state_dict(self) -> dict[str, Tensor]:
        """The parameters under ICLRec's key names (detached copies), for that code to load.

        Returns:
            A flat ``{name: tensor}`` dict with the keys that ``from_iclrec_state_dict`` reads.

        Examples:
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(num_items=5, hidden_size=4, num_layers=1)
            >>> state = encoder.to_iclrec_state_dict()
            >>> state["item_embeddings.weight"].shape, len(state)
            (torch.Size([7, 4]), 20)
        """
        return {key: value.detach().clone() for key, value in self.state_dict().items()}

    @classmethod
    def from_iclrec_state_dict(
        cls,
        state_dict: Mapping[str, Tensor],
        num_heads: int = 2,
        dropout: float = 0.5,
        **kwargs: float | None,
    ) -> SASRecEncoder:
        """Build an encoder from a state dict of the public S3-Rec / CoSeRec / ICLRec SASRec.

        The number of items (rows - 2), the hidden size, ``max_len`` and the number of layers
        are read from the tensors' shapes and keys. Keys outside the encoder (e.g. extra heads
        a trainer saved) are ignored and logged at DEBUG level. A dict nested under ``"model"``
        or ``"state_dict"``, and keys all prefixed with ``"module."`` (DataParallel), are
        accepted too. The number of heads is not stored in a state dict: pass the one used in
        training.

        Args:
            state_dict: the checkpoint mapping.
            num_heads: attention heads used in training.
            dropout: dropout for further training (no effect in eval mode).
            **kwargs: further constructor arguments (``attention_dropout``, ``layer_norm_eps``,
                ``initializer_range``).

        Returns:
            The encoder holding those weights, in training mode, with parameters in the dtype of
            the checkpoint's ``item_embeddings.weight`` (float32 for the public code's files).

        Raises:
            TypeError: if ``state_dict`` is not a mapping, or ``kwargs`` repeats an inferred
                argument.
            ValueError: if required keys are missing or a tensor has the wrong shape (the message
                names them).

        Examples:
            >>> from s4rec_components import SASRecEncoder
            >>> source = SASRecEncoder(num_items=9, hidden_size=8, num_layers=3, max_len=6)
            >>> checkpoint = {"model": source.to_iclrec_state_dict(), "epoch": 3}
            >>> copy = SASRecEncoder.from_iclrec_state_dict(checkpoint)
            >>> copy.num_items, copy.hidden_size, copy.num_layers, copy.max_len
            (9, 8, 3, 6)
        """
        inferred = {"num_items", "hidden_size", "num_layers", "max_len"} & set(kwargs)
        if inferred:
            raise TypeError(f"{sorted(inferred)} are read from state_dict and cannot be passed")
        state = _unwrap_state_dict(state_dict)
        missing = [key for key in _EMBEDDING_KEYS if key not in state]
        if missing:
            raise ValueError(f"state_dict is missing the SASRec keys {missing}")
        for key in _EMBEDDING_KEYS:
            check_tensor(state[key], f"state_dict[{key!r}]")

        items = state["item_embeddings.weight"]
        if items.ndim != 2 or items.shape[0] < NUM_SPECIAL_ROWS + 1:
            raise ValueError(
                "state_dict['item_embeddings.weight'] must have shape (n + 2, d) with n >= 1, "
                f"got shape {tuple(items.shape)}"
            )
        num_items, d = items.shape[0] - NUM_SPECIAL_ROWS, items.shape[1]
        positions = state["position_embeddings.weight"]
        if positions.ndim != 2 or positions.shape[1] != d or positions.shape[0] < 1:
            raise ValueError(
                f"state_dict['position_embeddings.weight'] must have shape (max_len, {d}), got "
                f"shape {tuple(positions.shape)}"
            )

        layer_ids = set()
        for key in state:
            if key.startswith(_LAYER_PREFIX):
                index = key[len(_LAYER_PREFIX) :].split(".", 1)[0]
                if index.isdigit():
                    layer_ids.add(int(index))
        if not layer_ids:
            raise ValueError(f"state_dict has no '{_LAYER_PREFIX}N.*' keys (no transformer layers)")
        num_layers = max(layer_ids) + 1

        expected = {key: (d,) for key in ("LayerNorm.weight", "LayerNorm.bias")}
        expected["item_embeddings.weight"] = tuple(items.shape)
        expected["position_embeddings.weight"] = tuple(positions.shape)
        for index in range(num_layers):
            for name, shape in _layer_shapes(d).items():
                expected[f"{_LAYER_PREFIX}{index}.{name}"] = shape
        missing = [key for key in expected if key not in state]
        if missing:
            raise ValueError(f"state_dict is missing the SASRec keys {missing}")
        bad = [
            f"{key}: expected {shape}, got {_describe(state[key])}"
            for key, shape in expected.items()
            if not isinstance(state[key], Tensor) or tuple(state[key].shape) != shape
        ]
        if bad:
            raise ValueError("state_dict has tensors of the wrong shape: " + "; ".join(bad))
        ignored = sorted(set(state) - set(expected))
        if ignored:
            logger.debug("from_iclrec_state_dict ignores %d keys: %s", len(ignored), ignored)

        encoder = cls(
            num_items=num_items,
            hidden_size=d,
            num_layers=num_layers,
            num_heads=num_heads,
            max_len=positions.shape[0],
            dropout=dropout,
            **kwargs,
        )
        if items.is_floating_point():
            encoder = encoder.to(dtype=items.dtype)
        encoder.load_state_dict({key: state[key] for key in expected}, strict=True)
        return encoder

