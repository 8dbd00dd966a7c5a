"""Lightning overhead: steps/s and tokens/s of ``RetrieverModule`` under ``pl.Trainer`` vs a bare PyTorch loop.

Both sides do the same work: the same tiny BERT bi-encoder (same initial weights), the same DataLoader of
``ContrastiveDataModule`` (same batches, tokenised by the same collator), the same Tevatron loss, AdamW and linear
warmup/decay schedule. Lightning also logs loss, accuracy and learning rate every step (as in training; no
logger backend attached, so nothing is written). Throughput is measured in steady state: the clock starts at the
first step after ``--warmup`` steps and stops after the last one (setup costs are reported apart). Runs
alternate between the two sides and the median of ``--repeats`` is reported, to damp noise from other load.

    python benchmarks/bench_lightning_overhead.py [--steps 60] [--warmup 5] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from transformers import get_linear_schedule_with_warmup

from xqg.data.datamodules import ContrastiveDataModule
from xqg.data.synthetic import WorldConfig, build_world
from xqg.models.biencoder import BiEncoder, RetrieverSpec, load_tokenizer
from xqg.models.retriever_module import RetrieverModule, _decay_groups, contrastive_loss
from xqg.models.tiny_bert import TinyBertConfig, tiny_bert_backbone
from xqg.tasks.train_retriever import _example_texts


def _tokens(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["query_attention_mask"].sum() + batch["passage_attention_mask"].sum())


def bare_loop(model: Any, loader: Any, steps: int, warmup: int, lr: float) -> dict[str, float]:
    model.train()
    opt = torch.optim.AdamW(_decay_groups(model, 0.0), lr=lr, eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    step, tokens, start, cpu_start = 0, 0, 0.0, 0.0
    t_setup = time.perf_counter()
    while step < steps:
        for batch in loader:
            if step == warmup:
                start, cpu_start = time.perf_counter(), time.process_time()
            q = model.encode_query(batch["query_input_ids"], batch["query_attention_mask"])
            p = model.encode_passage(batch["passage_input_ids"], batch["passage_attention_mask"])
            out = contrastive_loss(q, p, temperature=model.spec.temperature)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sched.step()
            _ = (out.ce.item(), out.accuracy.item())  # what Lightning's logging reads back every step
            if step >= warmup:
                tokens += _tokens(batch)
            step += 1
            if step == steps:
                break
    end, cpu_end = time.perf_counter(), time.process_time()
    return {
        "seconds": end - start,
        "cpu_seconds": cpu_end - cpu_start,
        "steps": steps - warmup,
        "tokens": tokens,
        "total": end - t_setup,
    }


class _Clock:
    def __init__(self, warmup: int) -> None:
        warm = warmup

        class Cb(pl.Callback):
            def __init__(self) -> None:
                self.start = self.cpu_start = 0.0
                self.end = self.cpu_end = 0.0
                self.tokens = 0
                self.steps = 0

            def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
                if trainer.global_step == warm:
                    self.start, self.cpu_start = time.perf_counter(), time.process_time()

            def on_train_batch_end(
                self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int
            ) -> None:
                if trainer.global_step > warm:
                    self.tokens += _tokens(batch)
                    self.steps += 1
                self.end, self.cpu_end = time.perf_counter(), time.process_time()

        self.cb = Cb()


def lightning_loop(model: Any, dm: Any, steps: int, warmup: int, lr: float) -> dict[str, float]:
    module = RetrieverModule(model, lr=lr, warmup_ratio=0.1)
    clock = _Clock(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock.cb],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    t1 = time.perf_counter()
    c = clock.cb
    return {
        "seconds": c.end - c.start,
        "cpu_seconds": c.cpu_end - c.cpu_start,
        "steps": c.steps,
        "tokens": c.tokens,
        "total": t1 - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-passages", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--p-max-len", type=int, default=128)
    ap.add_argument("--entities", type=int, default=300)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    cache = Path(tempfile.mkdtemp(prefix="bench_lightning_"))
    world = build_world(WorldConfig(n_entities=args.entities), cache)
    train = world.tevatron["train"]
    tiny = TinyBertConfig(
        vocab_size=4000,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=max(2, args.hidden // 64),
        intermediate_size=4 * args.hidden,
        max_position=max(160, args.p_max_len + 2),
        dropout=0.1,
    )
    path = tiny_bert_backbone(cache, tiny, lambda: _example_texts(train), "bench")
    tok = load_tokenizer(path)
    spec = RetrieverSpec(
        backbone="tiny", pooling="mean", normalize=True, temperature=0.05, p_max_len=args.p_max_len
    )
    base = BiEncoder.from_backbone(path, spec)
    results: dict[str, list[dict[str, float]]] = {"bare": [], "lightning": []}
    for r in range(args.repeats):
        order = ("bare", "lightning") if r % 2 == 0 else ("lightning", "bare")
        for side in order:
            pl.seed_everything(0, verbose=False)
            model = copy.deepcopy(base)
            dm = ContrastiveDataModule(
                train,
                tok,
                batch_size=args.batch_size,
                train_n_passages=args.n_passages,
                q_max_len=32,
                p_max_len=args.p_max_len,
                seed=0,
            )
            if side == "bare":
                dm.setup("fit")
                results[side].append(bare_loop(model, dm.train_dataloader(), args.steps, args.warmup, 1e-3))
            else:
                results[side].append(lightning_loop(model, dm, args.steps, args.warmup, 1e-3))
            m = results[side][-1]
            print(
                f"run {r} {side:9s} {m['steps'] / m['seconds']:.2f} steps/s  {m['tokens'] / m['seconds']:.0f} "
                f"tokens/s  (steady {m['seconds']:.2f}s wall, {m['cpu_seconds']:.2f}s CPU; total "
                f"{m['total']:.2f}s)",
                flush=True,
            )

    def med(side: str, key: str, clock: str = "seconds") -> float:
        return statistics.median(x[key] / x[clock] for x in results[side])

    summary: dict[str, Any] = {
        side: {
            "steps_per_s": med(side, "steps"),
            "tokens_per_s": med(side, "tokens"),
            "steps_per_cpu_s": med(side, "steps", "cpu_seconds"),
            "tokens_per_cpu_s": med(side, "tokens", "cpu_seconds"),
            "total_s": statistics.median(x["total"] for x in results[side]),
        }
        for side in results
    }
    overhead = 1.0 - summary["lightning"]["steps_per_s"] / summary["bare"]["steps_per_s"]
    cpu_overhead = 1.0 - summary["lightning"]["steps_per_cpu_s"] / summary["bare"]["steps_per_cpu_s"]
    summary["lightning_overhead_wall"] = overhead
    summary["lightning_overhead_cpu"] = cpu_overhead
    summary["setup"] = {
        k: getattr(args, k)
        for k in (
            "steps",
            "warmup",
            "repeats",
            "threads",
            "batch_size",
            "n_passages",
            "hidden",
            "layers",
            "p_max_len",
            "entities",
        )
    }
    summary["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
    }
    b, lt = summary["bare"], summary["lightning"]
    print(f"\n{'':22s}{'bare':>10s}{'lightning':>12s}")
    print(f"{'steps/s (wall)':22s}{b['steps_per_s']:10.2f}{lt['steps_per_s']:12.2f}")
    print(f"{'tokens/s (wall)':22s}{b['tokens_per_s']:10.0f}{lt['tokens_per_s']:12.0f}")
    print(f"{'steps/CPU-s':22s}{b['steps_per_cpu_s']:10.2f}{lt['steps_per_cpu_s']:12.2f}")
    print(f"{'tokens/CPU-s':22s}{b['tokens_per_cpu_s']:10.0f}{lt['tokens_per_cpu_s']:12.0f}")
    print(
        f"Lightning overhead, median of {args.repeats}: {100 * cpu_overhead:+.1f}% in CPU time, "
        f"{100 * overhead:+.1f}% in wall time (target <= 5%)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
