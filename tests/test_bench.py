"""`make bench` keeps working: the quick rows run end to end and print their ratios (numbers are not asserted
here; speed targets live in the benchmark itself)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_bench_prints_its_rows():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--epochs", "2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert re.search(r"portanet: (fused C kernels: sgd, adam|standard code \()", text)
    head = re.search(r"\(a-c\) 784-256-256-10, batch 128 .*ratio (\d+\.\d+) .*ratio (\d+\.\d+) .*test acc portanet "
                     r"(\d+\.\d+)% pytorch (\d+\.\d+)%", text)
    assert head, text
    assert all(float(v) > 0 for v in head.groups())
    own = re.search(r"PyTorch in its own process +pytorch +(\d+\.\d+)s +portanet/pytorch (\d+\.\d+)", text)
    assert own, text
