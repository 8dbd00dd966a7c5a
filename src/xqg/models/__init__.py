"""Models: the bi-encoder retriever (``biencoder``), its Lightning module (``retriever_module``), tiny offline
backbones (``tiny`` for BERT, ``tiny_t5`` for the generator) and the generator's Lightning module.

Nothing is imported here on purpose: importing ``xqg.models`` must not pull in torch, transformers or Lightning.
"""
