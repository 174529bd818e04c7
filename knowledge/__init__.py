"""Siyu's knowledge base: loaders, chunking, registry, embeddings, Chroma store, hybrid retrieval.

This package imports nothing from ``bot``, ``campaigns`` or ``adapters`` (an import-linter
contract checks it). Its public face is :class:`knowledge.base.KnowledgeBase` and the value types
in :mod:`knowledge.types`.
"""
