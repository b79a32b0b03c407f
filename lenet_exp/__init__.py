"""lenet_exp: the textbook LeNet experiment as a Hydra-configured tool (train, log, sweep, summarize)."""

import os

# cuBLAS reads this once, at its first call in the process: set here, before any CUDA work can happen, so a
# deterministic=true job still gets repeatable matrix products after a non-deterministic one in the same process.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
