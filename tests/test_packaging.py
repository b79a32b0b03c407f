"""A plain (non-editable) install ships the configs inside the package and runs outside the repo."""

import os
import subprocess
import sys
import zipfile

from helpers import REPO, run_cli


def test_wheel_ships_configs_and_composes_outside_the_repo(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("lenet_exp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for group in (
        "model/lenet",
        "activation/sigmoid",
        "optimizer/sgd",
        "data/fashion_mnist",
        "device/auto",
        "trainer/default",
    ):
        assert f"lenet_exp/conf/{group}.yaml" in names
    assert "lenet_exp/conf/config.yaml" in names and "lenet_exp/conf/hydra/launcher/parallel.yaml" in names
    assert "entry_points.txt" in " ".join(names)
    assert (
        "hydra_plugins/lenet_exp_halving/halving_sweeper.py" in names and "hydra_plugins/__init__.py" not in names
    )  # a namespace package

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {"PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", "import lenet_exp.config as c; print(c.__file__, c.CONFIG_PATH)"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert proc.stdout.split() == [str(site / "lenet_exp" / "config.py"), "pkg://lenet_exp.conf"]
    proc = run_cli("--cfg", "job", "optimizer=adam", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    sweeper = run_cli("--cfg", "hydra", "-p", "hydra.sweeper", "hparams_search=halving", cwd=tmp_path, env=env)
    assert "_target_: hydra_plugins.lenet_exp_halving.halving_sweeper.HalvingSweeper" in sweeper.stdout, sweeper.stderr
    assert "_target_: torch.optim.Adam" in proc.stdout and "name: fashion_mnist" in proc.stdout
    assert (
        run_cli("optimizer=nope", cwd=tmp_path, env=env).stderr.strip()
        == "Error: optimizer=nope: unknown option of group 'optimizer'; allowed: adam, sgd"
    )
