"""lenet_exp: the textbook LeNet experiment as a Hydra-configured tool (train, log, sweep, summarize).

From Python: `lenet_exp.compose(overrides)`, `lenet_exp.train(cfg, run_dir)`, `lenet_exp.load(run_dir)` (api.py,
loaded on first use, so that `python -m lenet_exp --help` starts without torch).
"""

import os

# cuBLAS reads this once, at its first call in the process: set here, before any CUDA work can happen, so a
# deterministic=true job still gets repeatable matrix products after a non-deterministic one in the same process.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

API = ("compose", "train", "load", "Result")  # lenet_exp.api's, as lenet_exp.<name>


def __getattr__(name: str):
    if name in API:
        from lenet_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'lenet_exp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
