"""Sampling from a T5/mT5 with a static KV cache, shared cross-attention keys and one CUDA graph per step.

The default sampling loop (:meth:`xqg.generation.sampling.QueryGenerator._sample`) calls the transformers model once
per token: every decoding step launches hundreds of small kernels from Python, grows the self-attention cache with
``torch.cat``, and attends each of the n samples of a prompt to its own copy of the encoder's keys and values. On
a GPU that is launch-bound for small models and memory-bound for mT5-base (measured on an H200: 2,322 sequences/s
where the arithmetic allows over 20,000). This decoder runs the same network over the model's own weights with:

* a self-attention cache preallocated for ``max_new_tokens`` and written in place at the step's position (the
  relative position bias of every step is precomputed, future positions masked);
* the cross-attention keys and values computed once per *prompt* and shared by its n samples (queries reshaped to
  ``(prompts, heads, n, d_kv)``), so they are read once per step instead of n times;
* the step's top-k from the maxima of vocabulary slices (:func:`chunked_topk`; ``torch.topk`` over mT5's 250,112
  tokens was 28% of the decoder's GPU time);
* sampling inside the step from uniforms drawn for the whole batch up front (inverse CDF over the top-k
  candidates, the same distribution as :class:`~xqg.generation.sampling.CandidateSampler`), so a step has no
  host synchronisation and, on CUDA, is captured once as a graph and replayed (one launch per token).

Finished rows are not dropped (shapes stay static); a row that drew EOS writes pad from then on, and the loop
stops once every row is finished (checked every :data:`CHECK_EVERY` steps). The text differs from the loop's for
the same seed (other random draws, other summation order), so stores made this way carry their own fingerprint
(:data:`SAMPLER_VERSION`); the CPU keeps the loop by default, so CPU text is unchanged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

#: goes into the generated store's fingerprint when this decoder produced it (the loop's stores carry none)
SAMPLER_VERSION = "static-2"
#: decoding steps between the (host-synchronising) checks whether every row has finished
CHECK_EVERY = 8
_MAX_GRAPHS = (
    1  # captured step graphs kept (each owns its buffers): consecutive batches of one shape share it
)


def supports(model: Any) -> bool:
    """Whether ``model`` is a T5-family encoder-decoder (T5, mT5, ...) whose weights are all bf16 or all fp32."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in ("t5", "mt5"):
        return False
    if not hasattr(model, "decoder") or not hasattr(model, "lm_head"):
        return False
    dtypes = {p.dtype for p in model.parameters()}
    return len(dtypes) == 1 and dtypes <= {torch.bfloat16, torch.float32}


def static_prompt_bytes(config: Any, n: int, source_len: int, new_tokens: int) -> int:
    """Bytes one prompt takes in :class:`StaticT5Decoder` (bf16): its self-attention cache for ``new_tokens``
    (n rows), its cross-attention keys/values once (shared by the n samples), the encoder's largest transient
    activations, and 8 bytes per vocabulary entry and row for the logits and top-k scratch. mT5-base, 128-token
    prompts, n=5: ~22 MB, against ~54 MB in the loop (:func:`~xqg.generation.sampling.prompt_bytes`)."""
    heads, d_kv = int(getattr(config, "num_heads", 8)), int(getattr(config, "d_kv", 64))
    inner, d_model = heads * d_kv, int(getattr(config, "d_model", heads * d_kv))
    layers = int(getattr(config, "num_decoder_layers", None) or getattr(config, "num_layers", 6))
    self_kv = n * new_tokens * layers * 2 * inner * 2
    cross_kv = source_len * layers * 2 * inner * 2
    encoder = source_len * (
        source_len * heads * 8 + int(getattr(config, "d_ff", 4 * d_model)) * 6 + d_model * 8
    )
    logits = n * int(config.vocab_size) * 8
    return self_kv + cross_kv + encoder + logits


#: vocabulary width from which a step's top-k is :func:`chunked_topk` (None: always ``torch.topk``). On an H200,
#: over 5,120 rows x 250,112 (mT5) bf16 logits: ``torch.topk`` 9.57 ms a step (28% of the decoder's GPU time),
#: ``chunked_topk`` 2.36 ms; a batch of 1,024 mT5-base prompts went from 4,842 to 6,086 sequences/s
CHUNKED_TOPK_FROM: int | None = 65_536
#: attention through ``scaled_dot_product_attention`` instead of matmul, softmax, matmul. Off: on an H200 its
#: cuDNN kernels were slower at these shapes (one query per row over 32 or 128 keys): 5,866 against 6,086
#: sequences/s for mT5-base, and the tiny demo T5's generation 2.91 s against 1.56 s
FUSED_ATTENTION = False
TOPK_CHUNK = 1024  # slice width of :func:`chunked_topk` in the decoder


def chunked_topk(logits: torch.Tensor, k: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits.topk(k, dim=-1)`` (the same values, sorted descending; indices may differ among equal values)
    from one pass over the row: the maximum of each ``chunk``-wide slice, the ``k`` slices with the largest
    maxima, then the top ``k`` of those slices' values (and the tail past the last whole slice). Exact: an
    element of the top ``k`` whose slice was not chosen has ``k`` chosen maxima at least as large (a tie)."""
    rows, width = logits.shape
    slices = width // chunk
    if slices <= k:
        return logits.topk(min(k, width), dim=-1)
    whole = slices * chunk
    blocks = logits[:, :whole].view(rows, slices, chunk)
    chosen = blocks.amax(dim=-1).topk(k, dim=-1).indices  # (rows, k)
    within = torch.arange(chunk, device=logits.device)
    vals = blocks.gather(1, chosen[:, :, None].expand(rows, k, chunk)).reshape(rows, k * chunk)
    idx = (chosen[:, :, None] * chunk + within).reshape(rows, k * chunk)
    if whole < width:
        vals = torch.cat([vals, logits[:, whole:]], dim=-1)
        tail = torch.arange(whole, width, device=logits.device)
        idx = torch.cat([idx, tail.expand(rows, width - whole)], dim=-1)
    v, i = vals.topk(k, dim=-1)
    return v, idx.gather(-1, i)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T5 attention (no ``1/sqrt(d)`` scaling, additive ``bias``, softmax in fp32) of ``q`` over ``k``/``v``."""
    if FUSED_ATTENTION:
        return torch.nn.functional.scaled_dot_product_attention(
            q, k.to(q.dtype), v.to(q.dtype), attn_mask=bias.to(q.dtype), scale=1.0
        )
    w = torch.matmul(q, k.transpose(2, 3)) + bias
    return torch.matmul(torch.softmax(w.float(), dim=-1).to(v.dtype), v)


def _norm(layer_norm: Any, x: torch.Tensor) -> torch.Tensor:
    """T5's RMS norm, as transformers computes it (fp32 variance, back to the weights' half type)."""
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + layer_norm.variance_epsilon)
    if layer_norm.weight.dtype in (torch.float16, torch.bfloat16):
        x = x.to(layer_norm.weight.dtype)
    return layer_norm.weight * x


@dataclass(frozen=True)
class _Shape:
    prompts: int
    n: int
    source_len: int
    steps: int
    top_k: int | None
    top_p: float | None
    temperature: float


class _Buffers:
    """Every tensor one step reads or writes, at fixed addresses (what a CUDA graph replays over)."""

    def __init__(self, dec: StaticT5Decoder, shape: _Shape, device: torch.device) -> None:
        rows, layers = shape.prompts * shape.n, len(dec.blocks)
        h, dk, dt = dec.heads, dec.d_kv, dec.dtype
        self.shape = shape
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.cur = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.out = torch.zeros(rows, shape.steps, dtype=torch.long, device=device)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.uniform = torch.zeros(shape.steps, rows, 1, dtype=torch.float32, device=device)
        self.keys = [torch.zeros(rows, h, shape.steps, dk, dtype=dt, device=device) for _ in range(layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.cross_keys = [
            torch.zeros(shape.prompts, h, shape.source_len, dk, dtype=dt, device=device)
            for _ in range(layers)
        ]
        self.cross_values = [torch.zeros_like(k) for k in self.cross_keys]
        self.enc_bias = torch.zeros(shape.prompts, 1, 1, shape.source_len, dtype=dt, device=device)
        self.eos = torch.zeros(1, dtype=torch.long, device=device)
        self.pad = torch.zeros((), dtype=torch.long, device=device)
        self.graph: Any = None


class StaticT5Decoder:
    """Samples n continuations per prompt from a loaded T5-family model (see the module docstring)."""

    def __init__(self, model: Any, *, graphs: bool | None = None) -> None:
        """Raises ``ValueError`` for a model it does not implement (:func:`supports`, :meth:`check`)."""
        if not supports(model):
            raise ValueError("the static decoder needs a T5/mT5 model with all-bf16 or all-fp32 weights")
        cfg = model.config
        self.model = model
        self.blocks = list(model.decoder.block)
        self.heads, self.d_kv = int(cfg.num_heads), int(cfg.d_kv)
        self.dtype = model.lm_head.weight.dtype
        self.device = model.lm_head.weight.device
        scaled = getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings)  # transformers < 5.2x: tied
        self.scale = float(cfg.d_model) ** -0.5 if scaled else None
        self.graphs = self.device.type == "cuda" if graphs is None else bool(graphs)
        self._cache: dict[_Shape, _Buffers] = {}
        self._bias: dict[int, torch.Tensor] = {}
        start = cfg.decoder_start_token_id if cfg.decoder_start_token_id is not None else cfg.pad_token_id
        self.error = self.check(int(start or 0))  # raises ValueError unless it computes the model's logits

    def self_bias(self, steps: int) -> torch.Tensor:
        """``(heads, steps, steps)``: the decoder's relative position bias of query t over key j, plus the most
        negative value for j > t (the causal mask), in the weights' dtype."""
        if steps not in self._bias:
            att = self.blocks[0].layer[0].SelfAttention
            pos = torch.arange(steps, device=self.device)
            buckets = att._relative_position_bucket(
                pos[None, :] - pos[:, None],
                bidirectional=False,
                num_buckets=att.relative_attention_num_buckets,
                max_distance=att.relative_attention_max_distance,
            )
            bias = att.relative_attention_bias(buckets).permute(2, 0, 1).to(self.dtype)
            future = torch.ones(steps, steps, dtype=torch.bool, device=self.device).triu(1)
            self._bias[steps] = bias.masked_fill(future, torch.finfo(self.dtype).min).contiguous()
        return self._bias[steps]

    # -- one decoding step (static shapes, no host synchronisation) -------------------------------------------
    def _forward(self, b: _Buffers) -> torch.Tensor:
        """Logits of the step at ``b.pos`` for the tokens in ``b.cur``, writing their keys/values into the cache."""
        s = b.shape
        rows, h, dk = s.prompts * s.n, self.heads, self.d_kv
        x = self.model.decoder.embed_tokens(b.cur[:, 0])
        bias = self.self_bias(s.steps).index_select(1, b.pos)  # (heads, 1, steps)
        for i, block in enumerate(self.blocks):
            sa, ca, ff = block.layer[0], block.layer[1], block.layer[2]
            att = sa.SelfAttention
            y = _norm(sa.layer_norm, x)
            q = att.q(y).view(rows, h, 1, dk)
            b.keys[i].index_copy_(2, b.pos, att.k(y).view(rows, h, 1, dk))
            b.values[i].index_copy_(2, b.pos, att.v(y).view(rows, h, 1, dk))
            x = x + att.o(_attend(q, b.keys[i], b.values[i], bias[None]).reshape(rows, h * dk))
            att = ca.EncDecAttention
            y = _norm(ca.layer_norm, x)
            q = (
                att.q(y).view(s.prompts, s.n, h, dk).transpose(1, 2)
            )  # the n samples of a prompt share its keys
            o = _attend(q, b.cross_keys[i], b.cross_values[i], b.enc_bias)
            o = o.transpose(1, 2).reshape(rows, h * dk)
            x = x + att.o(o)
            x = x + ff.DenseReluDense(_norm(ff.layer_norm, x))
        x = _norm(self.model.decoder.final_layer_norm, x)
        if self.scale is not None:
            x = x * self.scale
        return self.model.lm_head(x)

    def _step(self, b: _Buffers) -> None:
        """One token for every row: forward, draw, write (pad once a row has finished), advance."""
        nxt = self._draw(self._forward(b), b.uniform.index_select(0, b.pos)[0], b.shape)
        nxt = torch.where(b.finished, b.pad, nxt)
        b.out.index_copy_(1, b.pos, nxt[:, None])
        b.finished |= (nxt[:, None] == b.eos[None, :]).any(-1)
        b.cur.copy_(nxt[:, None])
        b.pos.add_(1)

    def check(self, start: int) -> float:
        """Teacher-force two decoder steps on a small random prompt through this decoder and through the
        transformers model; set whether decoder outputs are scaled by ``d_model ** -0.5`` (tied-embedding T5;
        transformers versions spell it differently) to what matches, and return the relative error of the
        logits. Raises ``ValueError`` when neither matches (a T5 variant this decoder does not implement)."""
        gen = torch.Generator().manual_seed(0)
        vocab = self.model.lm_head.weight.shape[0]
        ids = torch.randint(3, vocab, (1, 6), generator=gen).to(self.device)
        mask = torch.ones_like(ids)
        dec = torch.tensor([[int(start), int(ids[0, 0])]], device=self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            ref = self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits.float()[0]
            hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state.to(
                self.dtype
            )
            scale, best = self.scale, math.inf
            for candidate in (None, float(self.model.config.d_model) ** -0.5):
                self.scale = candidate
                b = _Buffers(self, _Shape(1, 1, ids.shape[1], 2, None, None, 1.0), self.device)
                self._fill(b, hidden, mask, b.uniform, int(start), [0], 0)
                rows = []
                for t in range(2):
                    b.cur.fill_(int(dec[0, t]))
                    rows.append(self._forward(b).float()[0])
                    b.pos.add_(1)
                err = float((torch.stack(rows) - ref).norm() / ref.norm().clamp_min(1e-12))
                if err < best:
                    scale, best = candidate, err
        self.scale = scale
        if not best < 0.05:
            raise ValueError(
                f"static decoder disagrees with the model's own forward (relative error {best:.3g})"
            )
        return best

    @staticmethod
    def _draw(logits: torch.Tensor, u: torch.Tensor, s: _Shape) -> torch.Tensor:
        """Temperature, top-k, top-p as :class:`~xqg.generation.sampling.CandidateSampler`, then the candidate
        whose cumulative probability first exceeds ``u`` (inverse CDF: no RNG call inside the step)."""
        width = logits.shape[-1]
        if s.top_k is not None and CHUNKED_TOPK_FROM is not None and width >= CHUNKED_TOPK_FROM:
            values, index = chunked_topk(logits, s.top_k, TOPK_CHUNK)
        elif s.top_k is not None:
            values, index = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1)
        else:
            values, index = logits.sort(dim=-1, descending=True)
        values = values.float()
        if s.temperature != 1.0:
            values = values / s.temperature
        probs = values.softmax(dim=-1)
        if s.top_p is not None and s.top_p < 1.0:
            before = probs.cumsum(dim=-1) - probs
            probs = probs.masked_fill(before >= s.top_p, 0.0)
        cdf = probs.cumsum(dim=-1)
        choice = (cdf < u * cdf[:, -1:]).sum(dim=-1, keepdim=True).clamp_max(index.shape[-1] - 1)
        return index.gather(-1, choice).squeeze(-1)

    # -- a batch --------------------------------------------------------------------------------------------------
    def _buffers(self, shape: _Shape) -> _Buffers:
        b = self._cache.pop(shape, None)
        if b is None:
            while len(self._cache) >= _MAX_GRAPHS:
                self._cache.pop(next(iter(self._cache)))
            b = _Buffers(self, shape, self.device)
        self._cache[shape] = b  # most recently used last
        return b

    def _capture(self, b: _Buffers) -> None:
        """Record one step as a CUDA graph (after warm-up steps on a side stream, as CUDA graphs require); on any
        failure the decoder falls back to eager steps for good."""
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step(b)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            b.pos.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(b)
            b.graph = graph
        except Exception as e:  # pragma: no cover - needs a GPU; torch raises several kinds here
            log.warning("CUDA graph capture failed, decoding step by step instead: %s", e)
            self.graphs = False
            torch.cuda.synchronize(self.device)

    def sample(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        n: int,
        *,
        max_new_tokens: int,
        top_k: int | None,
        top_p: float | None,
        temperature: float,
        start: int,
        eos: list[int],
        pad: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """``(prompts * n, max_new_tokens)`` token ids, prompt-major (pad after EOS); ``generator`` draws every
        uniform of the batch before the first step."""
        model, dev = self.model, self.device
        prompts, source_len = input_ids.shape
        shape = _Shape(prompts, n, source_len, max_new_tokens, top_k if top_k and top_k > 0 else None,
                       top_p, float(temperature))  # fmt: skip
        rows = prompts * n
        uniform = torch.rand(max_new_tokens, rows, 1, generator=generator, device=dev)
        hidden = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        with torch.autocast(dev.type, enabled=False):
            hidden = hidden.to(self.dtype)
            b = self._buffers(shape)
            if self.graphs and b.graph is None:
                self._fill(b, hidden, mask, uniform, start, eos, pad)
                self._capture(b)
            self._fill(b, hidden, mask, uniform, start, eos, pad)
            for step in range(max_new_tokens):
                if b.graph is not None:
                    b.graph.replay()
                else:
                    self._step(b)
                if (step + 1) % CHECK_EVERY == 0 and step + 1 < max_new_tokens and bool(b.finished.all()):
                    break
            return b.out.clone()

    def _fill(
        self,
        b: _Buffers,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        uniform: torch.Tensor,
        start: int,
        eos: list[int],
        pad: int,
    ) -> None:
        """Reset the buffers for a new batch: its cross-attention keys/values, mask, uniforms, start tokens."""
        prompts, source_len = mask.shape
        h, dk = self.heads, self.d_kv
        for i, block in enumerate(self.blocks):
            att = block.layer[1].EncDecAttention
            b.cross_keys[i].copy_(att.k(hidden).view(prompts, source_len, h, dk).transpose(1, 2))
            b.cross_values[i].copy_(att.v(hidden).view(prompts, source_len, h, dk).transpose(1, 2))
            b.keys[i].zero_()
            b.values[i].zero_()
        neg = torch.finfo(self.dtype).min
        b.enc_bias.copy_(((1.0 - mask.to(torch.float32)) * neg).to(self.dtype)[:, None, None, :])
        b.uniform.copy_(uniform)
        b.pos.zero_()
        b.cur.fill_(int(start))
        b.out.fill_(int(pad))
        b.finished.zero_()
        if b.eos.numel() != len(eos):
            b.eos = torch.tensor(
                eos, dtype=torch.long, device=self.device
            )  # before capture: fixed afterwards
        else:
            b.eos.copy_(torch.tensor(eos, dtype=torch.long))
        b.pad.fill_(int(pad))
