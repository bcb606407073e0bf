"""Semantic caching: embeddings, similarity guards and vector stores."""
