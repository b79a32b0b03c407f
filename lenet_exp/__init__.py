"""lenet_exp: the textbook LeNet experiment as a Hydra-configured tool (train, log, sweep, summarize)."""
