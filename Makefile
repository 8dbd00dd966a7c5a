# The README's main job: the offline demo's two studies on one cache, side by side.
#   make -j2 demo        # both studies at once: the main job (README, "Time")
#   make demo            # the same two studies one after the other (same numbers, slower: README "Time")
#   make demo-xdr        # one study: the cross-lingual tiny retriever (study xqg-demo)
#   make demo-zeroshot   # one study: the zero-shot tiny retriever (study xqg-demo_zeroshot)
#   make demo-check      # the expected results (reproductions/demo.yaml), re-scored from the cache
# Why side by side: each tiny retriever trains on one thread (recipe=tiny) and a sweep trial is mostly one-thread
# Python, so one study alone leaves a core idle much of the time. The studies share the tiny generator and its
# queries; the cache's build locks (xqg.core.locking) let one study build them while the other waits, so nothing
# is computed twice and every number equals a one-after-the-other run's (checked: the same 18 grid points).
PY ?= .venv/bin/python

# Idle OpenMP threads sleep instead of spinning (libgomp spins by default): with two jobs on two cores, one job's
# spinning threads take the cores the other needs. Measured side by side: both studies' query sums took 51 s with
# spinning, 17 s without (11 s each alone); the main job 4 min 52 s and 4 min 01 s. Alone it makes no difference.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: demo demo-xdr demo-zeroshot demo-check

demo: demo-xdr demo-zeroshot

demo-xdr:
	$(PY) evaluate.py -m experiment=demo sweep=demo

demo-zeroshot:
	$(PY) evaluate.py -m experiment=demo_zeroshot sweep=demo_zeroshot

demo-check:
	$(PY) -m xqg.tasks.reproduce --matrix reproductions/demo.yaml --all  # xqg-reproduce, with any PY
