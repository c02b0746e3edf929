"""The serving API (issue 3): FastAPI app over the offline job's artifact versions."""
