"""Successive halving over a sweep's grid (`python -m lenet_exp --multirun hparams_search=halving
optimizer.lr=0.01,0.1,0.9`), or over settings drawn from ranges (`hparams_search=ranged`)."""
