"""Data layer: readers and writers for the real formats (XOR-TyDi, Tevatron, DPR TSV, released generated
queries), the on-disk corpus store, XQuAD-R, the synthetic cross-lingual world, and the Lightning DataModules."""

from xqg.data.records import GeneratorPair, Passage, Question, TrainExample, passage_text

__all__ = ["GeneratorPair", "Passage", "Question", "TrainExample", "passage_text"]
