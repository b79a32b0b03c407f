"""The benchmark command runs both pipelines and prints their figures (speed itself is not asserted)."""

import re

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_bench_prints_both_pipelines_and_the_ratio(tmp_path, fashion_mnist):
    proc = run_cli("--device", "cpu", "--steps", "6", "--repeats", "2", "--workers", "1", "--target-acc", "0.2", cwd=tmp_path, module="lenet_exp.bench")
    assert proc.returncode == 0, proc.stderr
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(textbook|lenet_exp)\s+([\d,]+)", proc.stdout, re.M)}
    assert set(rows) == {"textbook", "lenet_exp"} and all(int(v.replace(",", "")) > 0 for v in rows.values())
    assert re.search(r"ratio lenet_exp / textbook: \d+\.\d\dx", proc.stdout)
    assert proc.stdout.count("epochs)") == 2  # both reached 0.2 test accuracy within --max-epochs
