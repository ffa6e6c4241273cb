r"""SASRec sequence encoder $f_\theta$ (S4Rec Eq. 6), checkpoint-compatible with ICLRec.

The architecture, the parameter names and the initialisation follow the SASRec model of the
public S3-Rec / CoSeRec / ICLRec code (``src/models.py`` and ``src/modules.py`` there), so a
state dict trained with that code loads with ``SASRecEncoder.from_iclrec_state_dict`` (see
:mod:`s4rec_components.iclrec`) and gives the same outputs at real (non-padding) positions,
and with ``padding_attention="iclrec"`` at padding positions too.

Letter legend: ``b`` batch, ``l`` sequence length, ``d`` hidden size, ``n`` items; inside the
attention ``h`` heads and ``e`` the head size ``d / h``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, cast, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ._validation import (
    as_index,
    check_choice,
    check_float,
    check_int,
    check_integer,
    check_ndim,
    check_nonempty,
    check_positive,
    check_probability,
    check_range,
    check_same_device,
    check_tensor,
    reads_values,
)
from .constants import PADDING_ID

__all__ = [
    "COMPUTE_PATHS",
    "PADDING_ATTENTIONS",
    "POOLINGS",
    "ComputePath",
    "PaddingAttention",
    "Pooling",
    "SASRecEncoder",
    "sasrec_attention_mask",
]

NUM_SPECIAL_ROWS = 2
"""Rows of the item table that are not items: padding (row 0) and the mask id (last row)."""
FFN_EXPANSION = 4
"""Width of the feed-forward layer as a multiple of the hidden size (``dense_1``: d -> 4d)."""

Pooling = Literal["last", "mean", "mean_all", "flatten"]
"""How ``SASRecEncoder.represent`` turns ``(b, l, d)`` outputs into one row per sequence."""
POOLINGS: tuple[str, ...] = get_args(Pooling)
"""Every pooling mode of ``SASRecEncoder.represent``, in the order of :data:`Pooling`."""

ComputePath = Literal["auto", "dense", "packed"]
"""How ``SASRecEncoder`` computes its forward pass (see the class docstring)."""
COMPUTE_PATHS: tuple[str, ...] = get_args(ComputePath)
"""Every value of ``compute_path``."""

PaddingAttention = Literal["masked", "iclrec"]
"""What a padding query attends to, and so what the encoder outputs at padding positions."""
PADDING_ATTENTIONS: tuple[str, ...] = get_args(PaddingAttention)
"""Every value of ``padding_attention``."""

AUTO_PACKED_MAX_REAL_FRACTION = 0.75
"""``compute_path="auto"`` on the CPU takes the packed path when at most this fraction of the
batch's ``b * l`` positions hold real items (measured; see the class docstring)."""


def sasrec_attention_mask(
    item_ids: Tensor, *, padding_attention: PaddingAttention = "masked"
) -> Tensor:
    r"""Boolean self-attention mask of SASRec: causal and key padding.

    Key $j$ is visible to query $i$ iff $j \le i$ and $\text{item\_ids}[j] \ne 0$.
    Real queries always see their own key. A query whose visible set is empty (a padding
    position with only padding at and before it) gets, with

    - ``padding_attention="masked"``: its own key only, so that
      ``scaled_dot_product_attention`` never normalises an empty row into NaN;
    - ``padding_attention="iclrec"``: every key, future ones included. This is what the public
      ICLRec code's additive $-10^4$ mask gives: all scores of such a row are shifted by
      the same constant, so its softmax runs over all $l$ positions.

    Rows with at least one visible key are the same in both modes.

    Args:
        item_ids: item ids, 0 for padding.
        padding_attention: ``"masked"`` or ``"iclrec"``, as above.

    Shape:
        - item_ids: $(b, l)$, integer.
        - output: $(b, l, l)$, bool, ``True`` where query (row) may attend to key (column).

    Returns:
        The mask, on the device of ``item_ids``; computed without reading the device.

    Raises:
        TypeError: if ``item_ids`` is not an integer tensor.
        ValueError: if ``item_ids`` is not 2-D or ``padding_attention`` is unknown.

    Examples:
        >>> import torch
        >>> from s4rec_components.encoder import sasrec_attention_mask
        >>> sasrec_attention_mask(torch.tensor([[0, 3, 5]])).int()
        tensor([[[1, 0, 0],
                 [0, 1, 0],
                 [0, 1, 1]]], dtype=torch.int32)
        >>> sasrec_attention_mask(torch.tensor([[0, 3, 5]]), padding_attention="iclrec").int()
        tensor([[[1, 1, 1],
                 [0, 1, 0],
                 [0, 1, 1]]], dtype=torch.int32)
    """
    check_ndim(item_ids, 2, "item_ids", "(b, l)")
    check_integer(item_ids, "item_ids")
    check_choice(padding_attention, PADDING_ATTENTIONS, "padding_attention")
    return _attention_mask(item_ids, padding_attention)


def _attention_mask(item_ids: Tensor, padding_attention: str) -> Tensor:
    """``sasrec_attention_mask`` without checks; pure tensor ops (no host read)."""
    length = item_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=item_ids.device).tril()
    allowed = causal & rearrange(item_ids != PADDING_ID, "b l -> b 1 l")
    if padding_attention == "iclrec":
        return allowed | ~allowed.any(dim=-1, keepdim=True)
    diagonal = torch.eye(length, dtype=torch.bool, device=item_ids.device)
    return allowed | diagonal


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r"""Inverted dropout, $x \odot \mathbb{1}[u \ge p] / (1 - p)$ with $u \sim U[0, 1)$.

    The same distribution as ``F.dropout``. On the CPU the keep mask comes from
    ``torch.rand_like`` and a comparison: ``F.dropout`` draws it with ``bernoulli_``, about
    5x slower on the CPU (measured). Other devices keep ``F.dropout`` (fused kernels).
    The identity in eval mode or for ``p == 0``; the random stream differs from
    ``F.dropout``'s on the CPU.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training=True)
    uniform_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    # 1.0 where kept, then the inverted-dropout scale; the mask needs no grad
    mask = torch.rand(x.shape, dtype=uniform_dtype, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))
    return x * mask.to(x.dtype)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, p: float) -> Tensor:
    r"""$\mathrm{dropout}_p(\mathrm{softmax}(q k^\top / \sqrt{e} + \log M))\, v$, as ``F.scaled_dot_product_attention``.

    ``q, k, v``: (b, h, l, e); ``mask``: (b, 1, l, l) bool, at least one ``True`` per row.
    Returns (b, h, l, e). Training on the CPU (``p > 0``) takes an explicit path whose dropout
    is :func:`_dropout` (the fused function draws its mask with ``bernoulli_``, ~6x slower on
    the CPU, and checks every row for being fully masked: measured 0.43 against 0.39 s a step
    of the ``iclrec`` preset, one thread). The same distribution; another random stream.
    Everything else (GPU, eval, ``p == 0``) calls the fused function.
    """
    if p == 0.0 or q.device.type != "cpu" or p >= 1.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    weights = torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1)
    return torch.matmul(_dropout(weights, p, True), v)


class _Dropout(nn.Module):
    """``nn.Dropout`` with the CPU-fast ``_dropout`` (no parameters: state dicts unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return _dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
    token_index: Tensor  # (m,) flat positions of the real tokens in the (b, l) input
    buckets: list[_Bucket]


def _packed_layout(item_ids: Tensor) -> _PackedLayout:
    """Where the real tokens of ``item_ids`` (b, l) go, grouped by how far left they reach.

    A row's span is ``l`` minus the column of its first non-padding id; positions left of it
    are padding, which is masked out for every real query, so attention restricted to the
    right-most ``span`` columns gives the same result at real positions. This reads the
    device (``nonzero``, bucket sizes): it is the packed path's price.
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
        mask = _attention_mask(item_ids[in_bucket, l - width :], "masked")
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
        self.out_dropout = _Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x``: (b, l, d); ``mask``: (b, 1, l, l) bool. Returns (b, l, d)."""
        q, k, v = (
            rearrange(proj(x), "b l (h e) -> b h l e", h=self.num_heads)
            for proj in (self.query, self.key, self.value)
        )
        p = self.attention_dropout if self.training else 0.0
        context = _attend(q, k, v, mask, p)
        context = rearrange(context, "b h l e -> b l (h e)")
        out: Tensor = self.LayerNorm(self.out_dropout(self.dense(context)) + x)
        return out

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
        # in the attention's dtype, which under autocast is not x's (bfloat16 from a float32 x)
        context = qkv.new_zeros(x.shape[0], x.shape[1])
        for bucket in layout.buckets:
            # in place on fresh zeros (no grad of their own): no copy of the whole grid
            grid = qkv.new_zeros(bucket.rows * bucket.span, qkv.shape[1])
            grid.index_copy_(0, bucket.grid_index, qkv.index_select(0, bucket.tokens))
            q, k, v = rearrange(
                grid, "(b l) (t h e) -> t b h l e", l=bucket.span, t=3, h=self.num_heads
            )
            out = _attend(q, k, v, bucket.mask, p)
            out = rearrange(out, "b h l e -> (b l) (h e)").index_select(0, bucket.grid_index)
            context.index_copy_(0, bucket.tokens, out)
        result: Tensor = self.LayerNorm(self.out_dropout(self.dense(context)) + x)
        return result


class _FeedForward(nn.Module):
    """Position-wise feed-forward, exact GELU, post-LN residual (ICLRec ``Intermediate``)."""

    def __init__(self, hidden_size: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, FFN_EXPANSION * hidden_size)
        self.dense_2 = nn.Linear(FFN_EXPANSION * hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)  # noqa: N815 (checkpoint key name)
        self.dropout = _Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (b, l, d). Returns (b, l, d)."""
        hidden = self.dense_2(F.gelu(self.dense_1(x), approximate="none"))
        out: Tensor = self.LayerNorm(self.dropout(hidden) + x)
        return out


class _Layer(nn.Module):
    """One transformer block: attention then feed-forward (ICLRec ``Layer``)."""

    def __init__(
        self, hidden_size: int, num_heads: int, dropout: float, attention_dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.attention = _SelfAttention(hidden_size, num_heads, dropout, attention_dropout, eps)
        self.intermediate = _FeedForward(hidden_size, dropout, eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out: Tensor = self.intermediate(self.attention(x, mask))
        return out

    def forward_packed(self, x: Tensor, layout: _PackedLayout) -> Tensor:
        """``x``: (m, d) real tokens only; see ``_SelfAttention.forward_packed``."""
        out: Tensor = self.intermediate(self.attention.forward_packed(x, layout))
        return out


class _Encoder(nn.Module):
    """The stack of blocks, held in ``layer`` as in ICLRec's ``Encoder``."""

    def __init__(self, layers: list[_Layer]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def layers(self) -> list[_Layer]:
        """The blocks, typed."""
        return cast("list[_Layer]", list(self.layer))



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

    with exact (erf) GELU and the boolean attention mask $M$ of ``sasrec_attention_mask``:
    key $j$ is visible to query $i$ iff $j \le i$ and item $j$ is not padding.
    The public code adds $-10^4$ to masked scores instead; at real positions the two agree
    to float precision.

    **Padding positions** (``padding_attention``):

    - ``"masked"`` (default): the output at every padding position is exactly 0, on every
      compute path. Padding never influences real positions.
    - ``"iclrec"``: the public code's values everywhere. Its additive mask lets a padding
      query that sees no real key (one left of the first real item) attend over all $l$
      positions, future items included; ``flatten`` / ``mean_all`` pooling of such outputs is
      ICLRec's sequence representation. Real positions are the same as with ``"masked"``.
      Needs the dense path.

    **Compute paths** (``compute_path``), equal at every position (float tolerance):

    - ``"dense"``: all $b \times l$ positions with static shapes. It reads nothing from the
      device while ``set_validate_args(False)`` is in force (no host synchronisation), so it
      is the path for GPUs and ``torch.compile``.
    - ``"packed"``: the position-wise parts (projections, feed-forward, LayerNorm) run on the
      $m$ real tokens alone, and attention runs per length bucket on the right-most positions
      that hold real items. It reads the device a few times per call (token indices, bucket
      sizes), which is free on the CPU and a host sync on a GPU.
    - ``"auto"`` (default): ``"dense"`` on every device but the CPU, under ``torch.compile``
      (the packed path's data-dependent sizes would break the graph), and whenever
      ``padding_attention="iclrec"``. Otherwise on the CPU, ``"packed"`` when at most
      ``AUTO_PACKED_MAX_REAL_FRACTION = 0.75`` of the batch's $b \cdot l$ positions are real
      items, ``"dense"`` otherwise (counting them is free on the CPU). Measured (forward +
      backward, $l = 50$, $d = 64$, 1-2 layers, $b \in \{256, 512\}$, 1-2 threads): packed
      takes 0.07-0.12x dense's time at Beauty's ~11% real positions, 0.3x at 30%, 0.55x at
      50%, 0.75x at 70%, and they break even at 85-90%; shorter sequences ($l$ = 4-16) show
      the same break-even.

    Item ids: ``0`` is padding (``constants.PADDING_ID``), ``1..num_items`` are items and
    ``num_items + 1`` is the mask id (used by masking augmentations), so the item table has
    ``num_items + 2`` rows. Sequences are left-padded (most recent item last); zeros inside a
    row (ICLRec's masking to id 0) are allowed and treated as padding. Weights are
    initialised as in that code: Linear / Embedding weights $\mathcal{N}(0, 0.02^2)$
    (including the padding row), biases 0, LayerNorm 1 / 0. Submodules carry that code's names,
    so the ICLRec checkpoint conversion is an identity mapping of keys.

    Args:
        num_items: number of real items ``n`` (ids ``1..n``). Must be >= 1.
        hidden_size: embedding size ``d``. Must be >= 1 and divisible by ``num_heads``.
        num_layers: number of transformer blocks. Must be >= 1.
        num_heads: attention heads ``h``. Must be >= 1.
        max_len: longest input sequence (rows of the position table). Must be >= 1.
        dropout: dropout of the embeddings and of both residual branches, in [0, 1]. On the
            CPU its mask is drawn as ``rand >= p`` (faster than ``F.dropout``'s
            ``bernoulli_``; same distribution, another random stream).
        attention_dropout: dropout of the attention weights, in [0, 1]; ``None`` uses
            ``dropout``.
        layer_norm_eps: LayerNorm epsilon. Must be > 0.
        initializer_range: standard deviation of the normal initialisation. Must be > 0.
        compute_path: ``"auto"``, ``"dense"`` or ``"packed"``, as above.
        padding_attention: ``"masked"`` or ``"iclrec"``, as above.

    Shape:
        - item_ids: $(b, l)$, integer, $1 \le l \le$ ``max_len``, ids in $[0, n + 1]$.
        - output: $(b, l, d)$, in the parameters' dtype.

    Raises:
        TypeError: if an integer argument is not an int, or ``item_ids`` is not an integer tensor.
        ValueError: if a hyper-parameter is out of range, ``compute_path="packed"`` is combined
            with ``padding_attention="iclrec"``, or ``item_ids`` is not 2-D, is empty, is not
            on the parameters' device, is longer than ``max_len`` or (a value check) holds ids
            outside $[0, n + 1]$.

    Examples:
        >>> import torch
        >>> from s4rec_components import SASRecEncoder
        >>> _ = torch.manual_seed(0)
        >>> encoder = SASRecEncoder(10, hidden_size=8, max_len=5).eval()
        >>> ids = torch.tensor([[0, 0, 3, 7, 2], [1, 2, 3, 4, 11]])
        >>> hidden = encoder(ids)
        >>> hidden.shape, bool((hidden[0, :2] == 0).all())
        (torch.Size([2, 5, 8]), True)
        >>> encoder.represent(ids, hidden=hidden).shape, encoder.score_items(hidden).shape
        (torch.Size([2, 8]), torch.Size([2, 5, 11]))
        >>> encoder.mask_id, encoder.num_items, encoder.hidden_size, encoder.max_len
        (11, 10, 8, 5)
        >>> iclrec = SASRecEncoder(10, hidden_size=8, max_len=5, padding_attention="iclrec")
        >>> iclrec.compute_path, bool((iclrec.eval()(ids)[0, :2] != 0).any())
        ('dense', True)
    """

    def __init__(
        self,
        num_items: int,
        *,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.5,
        attention_dropout: float | None = None,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        compute_path: ComputePath = "auto",
        padding_attention: PaddingAttention = "masked",
    ) -> None:
        super().__init__()
        num_items = check_int(num_items, "num_items", 1)
        hidden_size = check_int(hidden_size, "hidden_size", 1)
        num_layers = check_int(num_layers, "num_layers", 1)
        num_heads = check_int(num_heads, "num_heads", 1)
        max_len = check_int(max_len, "max_len", 1)
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"hidden_size must be divisible by num_heads, got hidden_size={hidden_size}, "
                f"num_heads={num_heads}"
            )
        dropout = check_probability(dropout, "dropout")
        if attention_dropout is None:
            attention_dropout = dropout
        attention_dropout = check_probability(attention_dropout, "attention_dropout")
        layer_norm_eps = check_positive(layer_norm_eps, "layer_norm_eps")
        initializer_range = check_positive(initializer_range, "initializer_range")
        check_choice(compute_path, COMPUTE_PATHS, "compute_path")
        check_choice(padding_attention, PADDING_ATTENTIONS, "padding_attention")
        if padding_attention == "iclrec":
            if compute_path == "packed":
                raise ValueError(
                    "padding_attention='iclrec' computes padding positions, which "
                    "compute_path='packed' skips; use compute_path='dense' or 'auto'"
                )
            compute_path = "dense"

        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range
        self.compute_path: ComputePath = compute_path
        self.padding_attention: PaddingAttention = padding_attention

        self.item_embeddings = nn.Embedding(
            num_items + NUM_SPECIAL_ROWS, hidden_size, padding_idx=PADDING_ID
        )
        self.position_embeddings = nn.Embedding(max_len, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)  # noqa: N815
        self.dropout = _Dropout(dropout)
        self.item_encoder = _Encoder(
            [
                _Layer(hidden_size, num_heads, dropout, attention_dropout, layer_norm_eps)
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

    def extra_repr(self) -> str:
        return f"compute_path={self.compute_path!r}, padding_attention={self.padding_attention!r}"

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

    # ------------------------------------------------------------------ checks
    def _check_item_ids(self, item_ids: Tensor, hidden: Tensor | None = None) -> Tensor:
        """Validate ``item_ids`` (on the device of ``hidden`` when given, else of the
        parameters); return them in an index dtype (see ``as_index``)."""
        check_ndim(item_ids, 2, "item_ids", "(b, l)")
        check_integer(item_ids, "item_ids")
        check_nonempty(item_ids, "item_ids")
        if hidden is None:
            check_same_device((item_ids, "item_ids"), (self.item_embeddings.weight, "the encoder's parameters"))
        else:
            check_same_device((item_ids, "item_ids"), (hidden, "hidden"))
        if item_ids.shape[1] > self.max_len:
            raise ValueError(
                f"item_ids must have at most max_len={self.max_len} positions, got shape "
                f"{tuple(item_ids.shape)}"
            )
        check_range(item_ids, PADDING_ID, self.mask_id, "item_ids")
        return as_index(item_ids)

    # ------------------------------------------------------------------ forward
    def forward(self, item_ids: Tensor) -> Tensor:
        """Encode a batch of item sequences; see the class docstring."""
        return self._forward_impl(self._check_item_ids(item_ids))

    def _forward_impl(self, item_ids: Tensor) -> Tensor:
        """Forward pass on validated ids, on the path ``compute_path`` selects."""
        if self._packed_for(item_ids):
            return self._forward_packed(item_ids)
        return self._forward_dense(item_ids)

    def _packed_for(self, item_ids: Tensor) -> bool:
        """Whether this batch runs on the packed path (see the class docstring for "auto")."""
        if self.compute_path != "auto":
            return self.compute_path == "packed"
        if item_ids.device.type != "cpu" or torch.compiler.is_compiling():
            return False  # data-dependent bucket sizes would break a compiled graph
        real = int((item_ids != PADDING_ID).sum())  # free on the CPU
        return real <= AUTO_PACKED_MAX_REAL_FRACTION * item_ids.numel()

    def _forward_dense(self, item_ids: Tensor) -> Tensor:
        """All b * l positions with static shapes; no host reads."""
        mask = _attention_mask(item_ids, self.padding_attention)
        mask = rearrange(mask, "b i j -> b 1 i j")  # shared by the heads
        positions = torch.arange(item_ids.shape[1], device=item_ids.device)
        x: Tensor = self.item_embeddings(item_ids) + self.position_embeddings(positions)
        x = self.dropout(self.LayerNorm(x))
        for layer in self.item_encoder.layers():
            x = layer(x, mask)
        if self.padding_attention == "masked":
            x = x * rearrange(item_ids != PADDING_ID, "b l -> b l 1").to(x.dtype)
        return x

    def _forward_packed(self, item_ids: Tensor) -> Tensor:
        """Forward pass over the m real tokens only; zeros at padding positions."""
        b, l = item_ids.shape
        layout = _packed_layout(item_ids)
        index = layout.token_index  # (m,) flat positions of the real tokens
        x = self.item_embeddings(item_ids.flatten()[index]) + self.position_embeddings(index % l)
        x = self.dropout(self.LayerNorm(x))  # (m, d)
        for layer in self.item_encoder.layers():
            x = layer.forward_packed(x, layout)
        out = x.new_zeros(b * l, x.shape[1]).index_copy_(0, index, x)
        grid: Tensor = rearrange(out, "(b l) d -> b l d", b=b)
        return grid

    # ------------------------------------------------------------------ pooling
    def represent(
        self, item_ids: Tensor, *, pooling: Pooling = "last", hidden: Tensor | None = None
    ) -> Tensor:
        r"""Pool the encoder output $H = f_\theta(s)$ into one row per sequence, $\mathbf{z}_u$.

        - ``"last"``: $H_{l-1}$, the output at the most recent item of a left-padded
          sequence. A row that holds real items but ends in padding (right-padded input, or a
          view whose last item was masked to 0) has no meaningful last output: it raises
          ``ValueError`` (a value check, skipped while ``set_validate_args(False)``).
        - ``"mean"``: $\frac{1}{|R|}\sum_{t \in R} H_t$ over the real positions $R$;
          zeros for a row that is all padding.
        - ``"mean_all"``: $\frac{1}{l}\sum_{t=0}^{l-1} H_t$ over all positions, padding
          included (ICLRec's ``sequence_output.mean(dim=1)``, its intent representation;
          with ``padding_attention="iclrec"`` for its padding values, and ``"masked"``
          padding counts as 0).
        - ``"flatten"``: $(H_0, \ldots, H_{l-1})$ concatenated, $(b, l d)$ (ICLRec's
          instance-contrastive view of CL4SRec).

        Args:
            item_ids: item ids, 0 for padding.
            pooling: one of ``POOLINGS``, as above.
            hidden: the already computed ``self(item_ids)``; computed here when ``None``.

        Shape:
            - item_ids: $(b, l)$.
            - hidden: $(b, l, d)$.
            - output: $(b, d)$; $(b, l \cdot d)$ for ``"flatten"``.

        Returns:
            The pooled representations, in the dtype of ``hidden``.

        Raises:
            ValueError: for an unknown ``pooling``, bad ``item_ids``, ``item_ids`` on another
                device than ``hidden`` (or, without ``hidden``, than the parameters), a
                ``hidden`` whose shape is not ``(b, l, d)``, or right-padded rows with
                ``pooling="last"``.
            TypeError: if ``hidden`` is not a floating-point tensor.

        Examples:
            >>> import torch
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(5, hidden_size=4, max_len=3).eval()
            >>> ids = torch.tensor([[0, 0, 0], [0, 2, 3]])
            >>> z = encoder.represent(ids, pooling="mean")
            >>> z.shape, bool((z[0] == 0).all())
            (torch.Size([2, 4]), True)
            >>> encoder.represent(ids, pooling="flatten").shape
            torch.Size([2, 12])
            >>> encoder.represent(torch.tensor([[2, 3, 0]]))
            Traceback (most recent call last):
            ...
            ValueError: item_ids must be left-padded for pooling='last' ...
        """
        check_choice(pooling, POOLINGS, "pooling")
        if hidden is not None:
            check_tensor(hidden, "hidden")
        item_ids = self._check_item_ids(item_ids, hidden)
        if hidden is None:
            hidden = self._forward_impl(item_ids)
        else:
            check_ndim(hidden, 3, "hidden", "(b, l, d)")
            check_float(hidden, "hidden")
            expected = (*item_ids.shape, self.hidden_size)
            if tuple(hidden.shape) != expected:
                raise ValueError(
                    f"hidden must have shape (b, l, d) = {expected} to match item_ids, got shape "
                    f"{tuple(hidden.shape)}"
                )
        if pooling == "last":
            if reads_values(item_ids):
                _check_last_is_real(item_ids)
            return hidden[:, -1]
        if pooling == "mean_all":
            return hidden.mean(dim=1)
        if pooling == "flatten":
            return rearrange(hidden, "b l d -> b (l d)")
        real = rearrange(item_ids != PADDING_ID, "b l -> b l 1").to(hidden.dtype)
        count = real.sum(dim=1).clamp(min=1)
        return (hidden * real).sum(dim=1) / count

    # ------------------------------------------------------------------ item side
    def embed_items(self, item_ids: Tensor) -> Tensor:
        r"""Output-side item vectors $E_{\text{item}}[i]$ (the tied item table).

        Scores of a representation $h$ for items $i$ are $h \cdot E_{\text{item}}[i]$;
        use this for sampled losses (positives, negatives) instead of reading
        ``item_embeddings.weight``. Gradients reach the table.

        Args:
            item_ids: item ids in $[0, n + 1]$ (padding and mask id included).

        Shape:
            - item_ids: $(\ldots)$, integer, any shape.
            - output: $(\ldots, d)$, in the parameters' dtype.

        Returns:
            The item vectors.

        Raises:
            TypeError: if ``item_ids`` is not an integer tensor.
            ValueError: if ``item_ids`` is not on the item table's device, or (a value check)
                if an id lies outside $[0, n + 1]$.

        Examples:
            >>> import torch
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(5, hidden_size=4)
            >>> encoder.embed_items(torch.tensor([[1, 2, 3], [4, 5, 0]])).shape
            torch.Size([2, 3, 4])
        """
        check_tensor(item_ids, "item_ids")
        check_integer(item_ids, "item_ids")
        check_same_device((item_ids, "item_ids"), (self.item_embeddings.weight, "the item table"))
        check_range(item_ids, PADDING_ID, self.mask_id, "item_ids")
        vectors: Tensor = self.item_embeddings(as_index(item_ids))
        return vectors

    def score_items(self, h: Tensor) -> Tensor:
        r"""Dot-product scores of representations against every item id, $h E^\top$.

        Column $i$ is the score of item id $i$ for $i = 0..n$. Column 0 is the
        padding id and is NOT masked here: callers ranking items should set it to ``-inf``. The
        mask id $n + 1$ is excluded. Dtypes are promoted: ``h`` and the table are both cast to
        ``torch.promote_types(h.dtype, table.dtype)`` (so a float64 ``h`` against a float32
        table gives float64 scores, a float16 ``h`` gives float32 scores).

        Args:
            h: representations, e.g. from ``represent`` or the full encoder output.

        Shape:
            - h: $(\ldots, d)$.
            - output: $(\ldots, n + 1)$.

        Returns:
            The scores, in the promoted dtype.

        Raises:
            TypeError: if ``h`` is not a floating-point tensor.
            ValueError: if the last dimension of ``h`` is not ``d`` or ``h`` is not on the item
                table's device.

        Examples:
            >>> import torch
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(5, hidden_size=4, max_len=3)
            >>> encoder.score_items(torch.randn(2, 4)).shape
            torch.Size([2, 6])
            >>> encoder.score_items(torch.randn(2, 4, dtype=torch.float64)).dtype
            torch.float64
        """
        check_tensor(h, "h")
        check_float(h, "h")
        if h.ndim == 0 or h.shape[-1] != self.hidden_size:
            raise ValueError(
                f"h must have shape (..., d) with d = {self.hidden_size}, "
                f"got shape {tuple(h.shape)}"
            )
        check_same_device((h, "h"), (self.item_embeddings.weight, "the item table"))
        table = self.item_embeddings.weight[: self.num_items + 1]
        dtype = torch.promote_types(h.dtype, table.dtype)
        return h.to(dtype) @ table.to(dtype).T

    # ------------------------------------------------------------------ checkpoints
    def to_iclrec_state_dict(self) -> dict[str, Tensor]:
        """The parameters under ICLRec's key names (detached copies), for that code to load.

        A thin wrapper over :func:`s4rec_components.iclrec.encoder_to_iclrec_state_dict`.

        Returns:
            A flat ``{name: tensor}`` dict with the keys that ``from_iclrec_state_dict`` reads.

        Examples:
            >>> from s4rec_components import SASRecEncoder
            >>> encoder = SASRecEncoder(5, hidden_size=4, num_layers=1)
            >>> state = encoder.to_iclrec_state_dict()
            >>> state["item_embeddings.weight"].shape, len(state)
            (torch.Size([7, 4]), 20)
        """
        from .iclrec import encoder_to_iclrec_state_dict

        return encoder_to_iclrec_state_dict(self)

    @classmethod
    def from_iclrec_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        *,
        num_heads: int = 2,
        dropout: float = 0.5,
        **kwargs: Any,
    ) -> SASRecEncoder:
        """Build an encoder from a state dict of the public S3-Rec / CoSeRec / ICLRec SASRec.

        A thin wrapper over :func:`s4rec_components.iclrec.iclrec_to_encoder_state_dict`: the
        number of items (rows - 2), the hidden size, ``max_len`` and the number of layers are
        read from the tensors' shapes and keys; nested (``"model"`` / ``"state_dict"``) and
        DataParallel (``"module."``) checkpoints are accepted; extra keys are ignored. The
        number of heads is not stored in a state dict: pass the one used in training.

        Args:
            state_dict: the checkpoint mapping.
            num_heads: attention heads used in training.
            dropout: dropout for further training (no effect in eval mode).
            **kwargs: further constructor arguments (``attention_dropout``, ``layer_norm_eps``,
                ``initializer_range``, ``compute_path``, ``padding_attention``).

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
            >>> source = SASRecEncoder(9, hidden_size=8, num_layers=3, max_len=6)
            >>> checkpoint = {"model": source.to_iclrec_state_dict(), "epoch": 3}
            >>> copy = SASRecEncoder.from_iclrec_state_dict(checkpoint)
            >>> copy.num_items, copy.hidden_size, copy.num_layers, copy.max_len
            (9, 8, 3, 6)
        """
        from .iclrec import iclrec_to_encoder_state_dict

        inferred = {"num_items", "hidden_size", "num_layers", "max_len"} & set(kwargs)
        if inferred:
            raise TypeError(f"{sorted(inferred)} are read from state_dict and cannot be passed")
        state, shapes = iclrec_to_encoder_state_dict(state_dict)
        encoder = cls(
            shapes.num_items,
            hidden_size=shapes.hidden_size,
            num_layers=shapes.num_layers,
            num_heads=num_heads,
            max_len=shapes.max_len,
            dropout=dropout,
            **kwargs,
        )
        items = state["item_embeddings.weight"]
        if items.is_floating_point():
            encoder = encoder.to(dtype=items.dtype)
        encoder.load_state_dict(state, strict=True)
        return encoder


def _check_last_is_real(item_ids: Tensor) -> None:
    """Refuse rows that hold real items but end in padding (a value check)."""
    real = item_ids != PADDING_ID
    bad = real.any(dim=1) & ~real[:, -1]
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            "item_ids must be left-padded for pooling='last' (the last position holds the most "
            f"recent item); row {row} ends in padding after real items: "
            f"{item_ids[row].tolist()}. Left-pad the sequences, or pool with 'mean'"
        )
