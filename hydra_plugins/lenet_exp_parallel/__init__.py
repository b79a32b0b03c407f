"""Local parallel jobs through joblib, a dead worker told in one line: `hydra/launcher=parallel`."""
