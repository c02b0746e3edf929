"""Offline job and maths: closed-form embeddings, exact metric indexes, versioned artifacts."""
