"""Helpers shared by the tests (not part of xqg): where the shared data lives, ``RunIf`` skip marks, readers
that only tests need. Imported as ``helpers.*``: pytest puts ``tests/`` on ``sys.path``."""
