"""xqg on one GPU at the paper's model sizes: exact search, query generation, encoding, retriever training.

Each measurement stands beside its ceiling, measured in the same run on the same data:

* search (torch backend, :mod:`xqg.retrieval.torch_search`): 2,110 queries x up to 8M fp16 passages x 768, depth
  100, passages resident on the device; ours without and with xQG fusion (per block, ``fuse_block``) beside the
  bare ``Q @ block.T`` and the bare matmul + ``topk``; the pipeline path (:func:`xqg.retrieval.index.search` from
  a host matrix, with faiss beside it where faiss is installed); sweep trials in one process over a 1M-row fp16
  store fused with query sums (the first reads the stores, later ones find them resident,
  :mod:`xqg.retrieval.resident`); and how many of fp32's top 100 fp16 keeps.
* generation and demo (:mod:`gpu_generation`, beside this script): mT5-base-dims sampling throughput, the
  decoding loop vs the static CUDA-graph decoder vs ``model.generate`` vs the bare decode, per batch size; and
  the demo-size generation with the tiny T5 (loop vs static decoder).
* encoding (BERT-base dims, vocab 119,547; 128-token passages): ``encode_texts`` (tokenisation included; also
  with 4 tokenisation threads) vs the model alone on pre-tokenised batches already on the device, and the host
  side alone (tokenise, sort, pad, pin) with 1 and 4 threads.
* retriever training (BERT-base, 128 queries x 8 passages): Lightning (``RetrieverModule``, bf16-mixed) vs a bare
  loop, s/step.

Models are random-init from configs (no hub access needed); sampling from random weights never draws EOS, so
every sample runs the full 32 tokens. Tokenizers are small local ones (``tokenizers``): encoding tokenises
synthetic text with a WordPiece fitted to it (ids all below the model's vocabulary), generation and training feed
random token ids (tokenisation is not what they measure). Every part has a time budget; timings are medians of
repeats within it. Needs only torch, transformers, pytorch-lightning, numpy, tokenizers (faiss optional).

    PYTHONPATH=src python benchmarks/gpu.py --out benchmarks/results/gpu.md     # ~7 min on one H100/H200
    PYTHONPATH=src python benchmarks/gpu.py --tiny --out /tmp/gpu_tiny.md        # same code, tiny, CPU, < 60 s
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import transformers
from transformers import BertConfig, BertModel

from xqg.core.artifacts import ArtifactDir
from xqg.core.device import autocast, resolve_device
from xqg.core.sharded import ShardPlan
from xqg.models.biencoder import BiEncoder, RetrieverSpec
from xqg.models.retriever_module import RetrieverModule, contrastive_loss
from xqg.models.tiny_bert import train_wordpiece
from xqg.retrieval.embeddings import build_store, memory_rows
from xqg.retrieval.encode import GPU_WINDOW, default_workers, encode_texts, pad_batch, prepare_batches
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.index import search
from xqg.retrieval.query_sums import QuerySumsConfig
from xqg.retrieval.query_sums_build import build_query_sums
from xqg.retrieval.resident import CACHE
from xqg.retrieval.torch_search import SearchBackend, TopK, block_topk, fuse_block, inner_products

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the generation parts live beside this script
from gpu_generation import bench_demo, bench_generation


@dataclass(frozen=True)
class Sizes:
    passages: int = 8_000_000
    host_passages: int = 1_000_000
    queries: int = 2110
    dim: int = 768
    depth: int = 100
    block: int = 2_097_152
    gen_layers: int = 12
    gen_heads: int = 12
    gen_ff: int = 2048
    gen_vocab: int = 250_112
    gen_batches: tuple[int, ...] = (64, 256, 1024)
    prompt_len: int = 128
    new_tokens: int = 32
    bert_layers: int = 12
    bert_heads: int = 12
    bert_ff: int = 3072
    bert_vocab: int = 119_547
    enc_texts: int = 40_000
    enc_batches: tuple[int, ...] = (256, 1024)
    p_len: int = 128
    train_queries: int = 128
    train_passages: int = 8
    train_steps: int = 5
    demo_passages: int = 2010
    demo_new_tokens: int = 32
    gen_name: str = "mT5-base dims"
    bert_name: str = "BERT-base dims"


TINY = Sizes(
    passages=40_000, host_passages=20_000, queries=64, dim=32, depth=10, block=16_384, gen_layers=2, gen_heads=4,
    gen_ff=64, gen_vocab=2000, gen_batches=(2, 8), prompt_len=16, new_tokens=6, bert_layers=2, bert_heads=4,
    bert_ff=64, bert_vocab=2000, enc_texts=256, enc_batches=(32, 128), p_len=32, train_queries=8,
    train_passages=2, train_steps=2, demo_passages=6, demo_new_tokens=6, gen_name="tiny mT5",
    bert_name="tiny BERT",
)  # fmt: skip
ALPHA = 0.01


class Clock:
    """Wall time with the device synchronised, and repeats until a count or a deadline."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev

    def sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def once(self, fn: Callable[[], Any]) -> float:
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0

    def median(self, fn: Callable[[], Any], reps: int, deadline: float) -> float:
        fn()  # warm-up
        times = [self.once(fn)]
        while len(times) < reps and time.perf_counter() + times[0] < deadline:
            times.append(self.once(fn))
        return statistics.median(times)

    def peak_gib(self) -> str:
        if self.dev.type != "cuda":
            return "n/a"
        return f"{torch.cuda.max_memory_allocated(self.dev) / 2**30:.1f}"

    def reset_peak(self) -> None:
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.dev)


# -- search -----------------------------------------------------------------------------------------------------
def _fits(sz: Sizes, dev: torch.device) -> int:
    """Passages to search: ``sz.passages``, or what fits twice (passages + query sums) in 60% of free memory."""
    if dev.type != "cuda":
        return sz.passages
    free = torch.cuda.mem_get_info(dev)[0]
    return int(min(sz.passages, 0.6 * free / (2 * 2 * sz.dim)))


def _has_out_dtype(q: torch.Tensor) -> bool:
    try:
        torch.mm(q[:2], q[:2].T, out_dtype=torch.float32)
        return True
    except (RuntimeError, TypeError):
        return False


def bench_search(sz: Sizes, clock: Clock, deadline: float) -> list[list[str]]:
    rows, overlap = _resident_search(sz, clock, deadline)
    clock.reset_peak()
    return [*rows, *_host_search(sz, clock, deadline), *_trials(sz, clock, deadline), overlap]


def _resident_search(sz: Sizes, clock: Clock, deadline: float) -> tuple[list[list[str]], list[str]]:
    """Passages and query sums resident on the device; ours vs the bare matmul (+ topk)."""
    dev, half = clock.dev, torch.float16 if clock.dev.type == "cuda" else torch.float32
    hname = "fp16" if half == torch.float16 else "fp32"
    n = _fits(sz, dev)
    g = torch.Generator(device=dev).manual_seed(0)
    P = torch.empty((n, sz.dim), dtype=half, device=dev)
    S = torch.empty_like(P)  # stands for the query sums (fp16 prefix sums of 35 query embeddings)
    for a in range(0, n, 1 << 20):
        b = min(a + (1 << 20), n)
        P[a:b] = torch.randn((b - a, sz.dim), generator=g, device=dev).to(half)
        S[a:b] = (6 * torch.randn((b - a, sz.dim), generator=g, device=dev)).to(half)
    Q32 = torch.randn((sz.queries, sz.dim), generator=g, device=dev)
    Q = Q32.to(half)
    k, blocks = sz.depth, range(0, n, sz.block)
    top = TopK(Q, k)
    step = max(1, top.score_bytes // (4 * min(sz.block, n)))

    def matmul() -> None:
        for a in blocks:
            for s in range(0, sz.queries, step):
                inner_products(Q[s : s + step], P[a : a + sz.block])

    def matmul_topk() -> None:
        for a in blocks:
            for s in range(0, sz.queries, step):
                inner_products(Q[s : s + step], P[a : a + sz.block]).topk(k, dim=1)

    def ours(fused: bool) -> Callable[[], Any]:
        def run() -> tuple[np.ndarray, np.ndarray]:
            t = TopK(Q, k)
            for a in blocks:
                block = P[a : a + sz.block]
                if fused:
                    block = fuse_block(block, S[a : a + sz.block], ALPHA).to(half)
                t.add(a, block)
            return t.result()

        return run

    label = f"{sz.queries:,} x {n:,} x {sz.dim}, depth {k}, {hname} blocks of {sz.block:,} rows on {dev.type}"
    rows = []
    with torch.inference_mode():
        for name, fn in [
            ("bare `Q @ block.T` (ceiling)", matmul),
            ("bare matmul + `topk` (ceiling)", matmul_topk),
            ("xqg torch backend, resident passages", ours(False)),
            ("xqg torch backend + xQG fusion per block", ours(True)),
        ]:
            if time.perf_counter() > deadline:
                rows.append([name, "skipped (time budget)", "", ""])
                continue
            t = clock.median(fn, 3, deadline)
            rows.append(
                [name, f"{t:.3f}", f"{2 * sz.queries * n * sz.dim / t / 1e12:.1f}", f"{t * 18e6 / n:.2f}"]
            )
        m = min(n, 1 << 20)  # fp16 vs fp32: how much of the exact top-k survives half precision
        exact = TopK(Q32[:256], k)
        exact.add(0, P[:m].float())
        halfk = TopK(Q[:256], k)
        halfk.add(0, P[:m])
        overlap = np.mean(
            [len(set(a) & set(b)) / k for a, b in zip(exact.result()[1], halfk.result()[1], strict=True)]
        )
        ties = torch.randint(0, 4, (64, 5000), generator=g, device=dev).float()  # exact ties everywhere
        cols = block_topk(ties, k)[1].cpu().numpy()
        t_np = ties.cpu().numpy()
        exact_rule = np.array_equal(
            cols, np.lexsort((np.broadcast_to(np.arange(5000), t_np.shape), -t_np))[:, :k]
        )
        rows.append([f"tie rule on {dev.type} (`block_topk` == score desc, row asc)", "PASS" if exact_rule else "FAIL", "", ""])  # fmt: skip
        mm = "fp32 output (`torch.mm(out_dtype=)`)" if _has_out_dtype(Q) else "half output, then fp32"
        rows.append([f"{hname} product: {mm if half != torch.float32 else 'fp32'}", "", "", ""])
    head = [f"**{label}**", "s / search", "TFLOP/s", "s at 18M (extrapolated)"]
    return [head, *rows], [
        f"top-{k} overlap, {hname} vs fp32 (256 queries x {m:,})",
        f"{overlap:.4f}",
        "",
        "",
    ]


def _host_search(sz: Sizes, clock: Clock, deadline: float) -> list[list[str]]:
    """The pipeline path: :func:`search` over a host float32 matrix (torch backend; faiss when installed)."""
    g = torch.Generator(device=clock.dev).manual_seed(1)
    n = sz.host_passages
    p = torch.randn((n, sz.dim), generator=g, device=clock.dev).cpu().numpy()
    q = torch.randn((sz.queries, sz.dim), generator=g, device=clock.dev).cpu().numpy()
    torch_be = SearchBackend("torch", str(clock.dev), "fp16" if clock.dev.type == "cuda" else "fp32")
    out = []
    for name, be in [("torch", torch_be), ("faiss", SearchBackend("faiss", "auto"))]:
        label = f"`index.search` backend={name} from a host fp32 matrix of {n:,} rows"
        if name == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                out.append([label, "faiss not installed", "", ""])
                continue
        if time.perf_counter() > deadline:
            out.append([label, "skipped (time budget)", "", ""])
            continue
        t = clock.median(lambda be=be: search(q, p, sz.depth, chunk_rows=sz.block, backend=be), 2, deadline)
        out.append(
            [label, f"{t:.3f}", f"{2 * sz.queries * n * sz.dim / t / 1e12:.2f}", f"{t * 18e6 / n:.1f}"]
        )
    return out


def _trials(sz: Sizes, clock: Clock, deadline: float) -> list[list[str]]:
    """Sweep trials in one process: ``index.search`` over an embedding store (fp16 on disk) fused with query sums
    (xQG, ``FusionTransform``), each trial another alpha, as a multirun's trials; the first reads the stores,
    later ones find them resident (:mod:`xqg.retrieval.resident`). A trial here = fuse + search + the run dict
    (scoring excluded). Query sums are stored for n = 1 only (a trial reads one prefix whatever n_max is)."""
    n, dim = sz.host_passages, sz.dim
    if time.perf_counter() + 60 * n / 1e6 > deadline:
        return [[f"sweep trials over a {n:,}-row store", "skipped (time budget)", "", ""]]
    g = torch.Generator(device=clock.dev).manual_seed(3)
    ids = [f"p{i}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="xqg-gpu-bench-") as tmp:
        t0 = time.perf_counter()
        P = torch.randn((n, dim), generator=g, device=clock.dev).half().cpu().numpy()
        art = ArtifactDir.for_spec(tmp, "embeddings", config={"bench": n, "dim": dim})
        store = build_store(art, memory_rows(ids, ids), ShardPlan(n, n), lambda t: P[[int(x[1:]) for x in t]])
        every = max(
            1, n // 1000
        )  # generated queries for 1 passage in `every`: the sums matrix is dense anyway
        records = ((ids[i], "fi", 0, str(i)) for i in range(0, n, every))
        sums = build_query_sums(
            records,
            lambda t: np.asarray(P[[int(x) for x in t]], dtype=np.float32),
            ids,
            tmp,
            QuerySumsConfig(languages=("fi",), n_max=1, shard_rows=1 << 17),
            inputs={"retriever": "bench", "generated": "bench"},
        )
        setup = time.perf_counter() - t0
        assert store is not None
        q = torch.randn((sz.queries, dim), generator=g, device=clock.dev).cpu().numpy()
        qids = [f"q{i}" for i in range(sz.queries)]
        be = SearchBackend("torch", str(clock.dev), "fp16" if clock.dev.type == "cuda" else "fp32")
        CACHE.clear()
        out = []
        for i, alpha in enumerate((0.01, 0.02, 0.03)):
            t = FusionTransform(sums, Fusion(alpha, 1))
            s = clock.once(lambda t=t: search(q, store, sz.depth, transform=t, chunk_rows=sz.block, backend=be).to_run(qids))  # fmt: skip
            where = "stores read from disk" if i == 0 else f"resident ({CACHE.used(True) / 2**30:.1f} GiB on the device, {CACHE.used(False) / 2**30:.1f} GiB host)"  # fmt: skip
            out.append([f"sweep trial {i + 1} (alpha {alpha}), {sz.queries:,} x {n:,} x {dim} + xQG fusion, {where}", f"{s:.3f}", f"{2 * sz.queries * n * dim / s / 1e12:.2f}", f"{s * 18e6 / n:.1f}"])  # fmt: skip
        CACHE.clear()
    out.append(
        [f"(setup: fp16 store + query sums of {n:,} rows built in {setup:.0f} s, not counted)", "", "", ""]
    )
    return out


# -- encoding and training -------------------------------------------------------------------------------------
def _bert(sz: Sizes, dev: torch.device, texts: list[str]) -> tuple[BiEncoder, Any]:
    tok = train_wordpiece(texts[:2000], vocab_size=min(4000, sz.bert_vocab))
    cfg = BertConfig(
        vocab_size=sz.bert_vocab, hidden_size=sz.dim, num_hidden_layers=sz.bert_layers,
        num_attention_heads=sz.bert_heads, intermediate_size=sz.bert_ff, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    with dev:
        bert = BertModel(cfg, add_pooling_layer=False)
    return BiEncoder(
        bert, None, RetrieverSpec(backbone="random-init bert-base dims", p_max_len=sz.p_len)
    ), tok


def _texts(n: int, words: int) -> list[str]:
    rng = np.random.default_rng(2)
    syll = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "sha", "qu", "xe", "dan", "ber", "tol"]
    vocab = ["".join(rng.choice(syll, size=rng.integers(1, 4))) for _ in range(3000)]
    idx = rng.integers(0, len(vocab), size=(n, words))
    return [" ".join(vocab[i] for i in row) for row in idx]


def bench_encoding(sz: Sizes, clock: Clock, deadline: float) -> list[list[str]]:
    dev = clock.dev
    texts = _texts(sz.enc_texts, sz.p_len)
    model, tok = _bert(sz, dev, texts)
    model.eval()
    ids = tok(texts, truncation=True, max_length=sz.p_len)["input_ids"]
    rows = [[f"**{sz.bert_name}, {sz.p_len}-token passages, {len(texts):,} texts**", "batch", "passages/s", "share of model-only"]]  # fmt: skip
    for b in sz.enc_batches:
        if time.perf_counter() > deadline:
            rows.append(["`encode_texts` / model only", str(b), "skipped (time budget)", ""])
            continue
        batches = [tuple(t.to(dev) for t in pad_batch(ids[a : a + b], tok.pad_token_id)) for a in range(0, len(ids), b)]  # fmt: skip

        def model_only(batches: list[tuple[torch.Tensor, ...]] = batches) -> None:
            with torch.inference_mode(), autocast(dev, "auto"):
                for i, m in batches:
                    model.encode_passage(i, m)

        ceiling = clock.median(model_only, 2, deadline)
        ours = clock.median(lambda b=b: encode_texts(model, tok, texts, "passage", max_len=sz.p_len, batch_size=b, device=dev), 2, deadline)  # fmt: skip
        rows.append([f"`encode_texts` (tokenisation included, {default_workers()} tokenisation thread(s))", str(b), f"{len(texts) / ours:,.0f}", f"{ceiling / ours:.0%}"])  # fmt: skip
        if b == max(sz.enc_batches) and time.perf_counter() < deadline:
            many = clock.median(lambda b=b: encode_texts(model, tok, texts, "passage", max_len=sz.p_len, batch_size=b, device=dev, workers=4), 2, deadline)  # fmt: skip
            rows.append(["`encode_texts`, 4 tokenisation threads", str(b), f"{len(texts) / many:,.0f}", f"{ceiling / many:.0%}"])  # fmt: skip
        rows.append(["model only, pre-tokenised batches on the device", str(b), f"{len(texts) / ceiling:,.0f}", "100%"])  # fmt: skip
    b = max(sz.enc_batches)
    window = max(GPU_WINDOW, 4 * b) if dev.type == "cuda" else len(texts)
    for w in sorted({1, 4, default_workers()}):  # the host side alone: tokenise, sort, pad (and pin on a GPU)
        if time.perf_counter() > deadline:
            break
        t = clock.median(lambda w=w: sum(1 for _ in prepare_batches(tok, texts, sz.p_len, b, window, dev.type == "cuda", w)), 2, deadline)  # fmt: skip
        rows.append([f"tokenise + pad alone, {w} thread{'s' if w > 1 else ''}", str(b), f"{len(texts) / t:,.0f}", ""])  # fmt: skip
    return rows


def bench_training(sz: Sizes, clock: Clock, deadline: float) -> list[list[str]]:
    dev = clock.dev
    model, _ = _bert(sz, dev, _texts(300, 20))
    g = torch.Generator().manual_seed(0)
    nq, npsg = sz.train_queries, sz.train_queries * sz.train_passages

    def batch() -> dict[str, torch.Tensor]:
        q = torch.randint(5, sz.bert_vocab, (nq, 32), generator=g)
        p = torch.randint(5, sz.bert_vocab, (npsg, sz.p_len), generator=g)
        return {"query_input_ids": q, "query_attention_mask": torch.ones_like(q),
                "passage_input_ids": p, "passage_attention_mask": torch.ones_like(p)}  # fmt: skip

    data = [batch() for _ in range(2)]
    steps = 2 + sz.train_steps
    label = f"**{sz.bert_name}, {nq} queries x {sz.train_passages} passages ({sz.p_len} tokens), AdamW**"
    rows = [[label, "precision", "s / step", "peak GiB"]]
    precision = "bf16-mixed" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "32-true"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    clock.reset_peak()
    times = []
    for s in range(steps):
        if time.perf_counter() > deadline:
            break
        b = {k: v.to(dev, non_blocking=True) for k, v in data[s % 2].items()}

        def step(b: dict[str, torch.Tensor] = b) -> None:
            with autocast(dev, "bf16" if precision == "bf16-mixed" else "fp32"):
                q = model.encode_query(b["query_input_ids"], b["query_attention_mask"])
                p = model.encode_passage(b["passage_input_ids"], b["passage_attention_mask"])
                loss = contrastive_loss(q, p).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        times.append(clock.once(step))
    bare = statistics.median(times[2:]) if len(times) > 2 else float("nan")
    rows.append(["bare PyTorch loop", precision, f"{bare:.3f}", f"{clock.peak_gib()}"])
    opt.state.clear()
    clock.reset_peak()
    stamps: list[float] = []

    class Stamp(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            clock.sync()
            stamps.append(time.perf_counter())

    loader = torch.utils.data.DataLoader(data * steps, batch_size=None, pin_memory=dev.type == "cuda")
    trainer = pl.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu", devices=1, precision=precision, max_steps=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Stamp()], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    if time.perf_counter() < deadline:
        trainer.fit(RetrieverModule(model, lr=1e-5, warmup_steps=1), train_dataloaders=loader)
        light = statistics.median(np.diff(stamps[1:]).tolist()) if len(stamps) > 3 else float("nan")
        rows.append(["Lightning `RetrieverModule`", precision, f"{light:.3f}", f"{clock.peak_gib()}"])
        rows.append(["Lightning overhead", "", f"{light / bare - 1:+.1%}", ""])
    return rows


# -- report -----------------------------------------------------------------------------------------------------
def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def _device_line(dev: torch.device) -> str:
    if dev.type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    p = torch.cuda.get_device_properties(dev)
    return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, CUDA {torch.version.cuda}"


def _report(args: argparse.Namespace, dev: torch.device, start: float, sections: list[str]) -> str:
    head = [
        "# xqg on one GPU: search, encoding, training, generation"
        + (" (--tiny smoke run)" if args.tiny else ""),
        "",
        f"Device: {_device_line(dev)}. torch {torch.__version__}, transformers {transformers.__version__}, "
        f"pytorch-lightning {pl.__version__}, Python {platform.python_version()}. "
        f"Total {time.perf_counter() - start:.0f} s.",
        "",
        f"`PYTHONPATH=src python benchmarks/gpu.py{' --tiny' if args.tiny else ''} --out {args.out}`; "
        "random-init models of the paper's dims (see the script's docstring for what each row measures).",
        "",
    ]
    return "\n".join(head + sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.md"))
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (a smoke run, < 60 s)")
    ap.add_argument("--device", default=None, help="default: cuda when available (cpu with --tiny)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for all parts together")
    ap.add_argument("--parts", default="search,encoding,training,generation,demo")
    ap.add_argument(
        "--demo-passages", type=int, default=None, help="passages of the demo part (default 2,010)"
    )
    args = ap.parse_args()
    sz = TINY if args.tiny else Sizes()
    if args.demo_passages:
        sz = dataclasses.replace(sz, demo_passages=args.demo_passages)
    if args.tiny:
        torch.set_num_threads(
            1
        )  # tiny ops: threads only wait on each other (and on a shared machine, much longer)
    dev = resolve_device(args.device or ("cpu" if args.tiny else "auto"))
    clock = Clock(dev)
    # generation last: a failed CUDA graph capture there must not take the other parts down with it
    shares = {"search": 0.2, "encoding": 0.2, "training": 0.1, "generation": 0.35, "demo": 0.15}
    benches = {"search": bench_search, "generation": bench_generation, "encoding": bench_encoding,
               "training": bench_training, "demo": bench_demo}  # fmt: skip
    start = time.perf_counter()
    sections: list[str] = []
    used = 0.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        used += shares[part] / sum(shares[p] for p in args.parts.split(","))
        deadline = start + used * args.budget  # time a part leaves unused goes to the next ones
        try:
            body = _table(benches[part](sz, clock, deadline))
        except Exception:  # a failed part is reported and the others still run
            body = "```\n" + traceback.format_exc(limit=4) + "```"
            clock.reset_peak()
        clock.reset_peak()
        sections.append(f"## {part} ({time.perf_counter() - t0:.0f} s)\n\n{body}\n")
        print(sections[-1], flush=True)
        args.out.write_text(_report(args, dev, start, sections))  # after every part: a killed run keeps some
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
