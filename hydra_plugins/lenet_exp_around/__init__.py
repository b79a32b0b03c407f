"""One knob at a time around a base setting (`python -m lenet_exp --multirun hparams_search=exercises`)."""
