"""The entry scripts' garbage-collector settings: off while importing, then what survived frozen, back on."""

from __future__ import annotations

import atexit
import gc

from xqg.core.gc_tuning import long_lived_imports


def test_imports_run_without_the_collector_and_what_survives_is_frozen() -> None:
    handlers, was_enabled = atexit._ncallbacks(), gc.isenabled()
    try:
        gc.enable()
        with long_lived_imports():
            assert not gc.isenabled()
            kept = [[i] for i in range(1000)]  # long-lived objects the collector would walk again and again
        assert gc.isenabled() and gc.get_freeze_count() >= len(kept)
        assert atexit._ncallbacks() == handlers + 1  # the freeze at exit
        gc.disable()  # a process that had it off keeps it off
        with long_lived_imports():
            pass
        assert not gc.isenabled()
    finally:
        atexit.unregister(gc.freeze)
        gc.unfreeze()
        if was_enabled:
            gc.enable()
