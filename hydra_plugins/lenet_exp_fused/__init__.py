"""A launcher that trains a sweep's jobs of one shape together as one fused model: `hydra/launcher=fused`."""
