"""Evaluate: generate/encode as needed (cached), fuse, search, score, log. Thin Hydra entry and sweep target.

Everything sits under the ``__main__`` guard: worker processes (the scorer's forkserver tokenisers) re-import
this file as ``__mp_main__`` and need none of it (importing the pipeline there cost about 12 s of the main job).
"""

if __name__ == "__main__":
    from xqg.core.gc_tuning import long_lived_imports

    with long_lived_imports():  # about 2 s off each start and exit (xqg.core.gc_tuning)
        import hydra
        from omegaconf import DictConfig

        from xqg.core.locking import release_every_lock
        from xqg.tasks.entrypoints import evaluate
        from xqg.tasks.schema import register_configs
        from xqg.tasks.targets import EVALUATE_TARGETS, check_node_targets, run_entry_point

    register_configs()

    # No version_base: Hydra 1.4 fixes the 1.3+ defaults and warns (Hydra15MigrationWarning) whenever it is passed.
    @hydra.main(config_path="conf", config_name="evaluate")
    def main(cfg: DictConfig) -> float | list[float] | None:
        check_node_targets(cfg)  # a refused trainer/callback/logger target: one line, before any work
        try:
            return evaluate(cfg)
        finally:
            release_every_lock()  # a failed build never keeps other runs waiting (xqg.core.locking)

    # What a config may name with `_target_` here: see xqg.tasks.targets (named classes only).
    run_entry_point(main, EVALUATE_TARGETS)
