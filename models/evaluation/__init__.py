"""Held-out evaluation: a per-user split, ranking measures, and the scores of dot, cosine and projected cosine."""
