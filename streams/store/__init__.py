"""The Redis layout of the pipeline's state: key grammar, the Lua script, the stores on it."""
