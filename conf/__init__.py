"""The config groups, shipped inside the package as lenet_exp.conf (Hydra reads a package config only with this)."""
