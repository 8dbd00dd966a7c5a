"""xqg: cross-lingual dense retrieval with cross-lingual query generation (xQG).

One package, one module per stage: data readers (``xqg.data``), retriever and generator models
(``xqg.models``), encoding, generation, augmentation, indexing, metrics and reports.
"""

__version__ = "0.1.0"
