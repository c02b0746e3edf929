"""The serving API: a FastAPI app over the offline job's artifact versions."""
