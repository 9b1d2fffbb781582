"""`vigil serve`: the pipeline, the stores and the API, run as one service."""
