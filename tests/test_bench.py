"""`make bench` keeps working: the quick rows run end to end and print their ratios (numbers are not asserted
here; speed targets live in the benchmark itself)."""
import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_bench_prints_its_rows():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--epochs", "2",
                          "--images", "6400"],
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
    quiet = re.search(r"rounds outside slow spells +(\d+) of (\d+) rounds .*portanet/pytorch (\d+\.\d+) +"
                      r"portanet/gemm-bound (\d+\.\d+)", text)
    assert quiet and 1 <= int(quiet[1]) <= int(quiet[2]) == 1, text


def test_quiet_rounds_are_those_whose_gemms_ran_near_their_fastest():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(ROOT, "benchmarks", "run.py"))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    # round 0 (warm-up) is dropped; rounds 2 and 4 of the rest are a slow spell
    t = run.Timings({"portanet": [9.0, 0.60, 1.50, 0.62, 0.61, 2.0],
                     "gemm": [5.0, 0.45, 0.90, 0.46, 0.45, 0.80]})
    assert t.quiet_rounds() == [0, 2, 3]
    assert t.ratio("portanet", "gemm", t.quiet_rounds()) == statistics.median([0.60 / 0.45, 0.62 / 0.46,
                                                                               0.61 / 0.45])
    assert t.ratio("portanet", "gemm") == statistics.median([0.60 / 0.45, 1.50 / 0.90, 0.62 / 0.46, 0.61 / 0.45,
                                                             2.0 / 0.80])


# -- benchmarks/gpu.py and offline_cuda.sh (make bench-gpu, make test-gpu) -----------------------------------------
# The names below leave out "gpu", "cuda" and "cupy": make test-gpu selects the suite's GPU cases by those words.
GPU_BENCH = os.path.join(ROOT, "benchmarks", "gpu.py")
CONTENDERS = ("portanet cpu eager", "portanet cpu captured", "portanet torch:cpu eager", "portanet torch:cpu captured",
              "pytorch eager", "pytorch graph")
NUMBER = r"(-?\d+\.\d+)"


def _gpu_bench():
    if "bench_gpu" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_gpu", GPU_BENCH)
        gpu = sys.modules["bench_gpu"] = importlib.util.module_from_spec(spec)   # dataclasses look it up there
        spec.loader.exec_module(gpu)
    return sys.modules["bench_gpu"]


def test_issue12_bench_smoke_prints_its_table_on_host_devices(tmp_path):
    out_file = tmp_path / "gpu.json"
    out = subprocess.run([sys.executable, GPU_BENCH, "--smoke", "--out", str(out_file)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.startswith("portanet GPU benchmark (smoke): us per training step, median of 3 interleaved rounds")
    assert re.search(r"^data: (Fashion-MNIST from \S+|synthetic uint8 data)", text, re.M)
    rows = re.findall(r"^ +(\d+)  (784-[\d-]+) +(\S.{28})  (.*)$", text, re.M)
    # two configs, headline first, six contenders each in a fixed order
    assert [(b, net, name.strip()) for b, net, name, _ in rows] == [
        (b, net, name) for b, net in (("8", "784-16-16-10"), ("32", "784-32-32-32-10")) for name in CONTENDERS], text
    for _, _, name, cells in rows:
        name = name.strip()
        if name.endswith("captured"):           # fit(capture=True) on a CPU device: portanet's own error, one line
            assert re.fullmatch(r"error: ValueError: capture=True records the training step into a CUDA graph, "
                                r"which (cpu|torch:cpu) cannot do: .*", cells), cells
        elif name == "pytorch graph":
            assert cells.startswith("error: RuntimeError: a CUDA graph needs a CUDA device"), cells
        else:
            m = re.fullmatch(rf" *{NUMBER} +{NUMBER} +- +(\d+) +{NUMBER}(  .*)?", cells)
            assert m, cells
            us, per_eager, steps, fixed = float(m[1]), float(m[2]), int(m[3]), float(m[4])
            assert steps == 40 and math.isfinite(fixed) and math.isfinite(us)
            if name == "pytorch eager":
                assert per_eager == 1.0
            if name == "portanet cpu eager":      # the rows where issue 12's eager targets are read
                assert re.fullmatch(r"  /pt-eager <= 0\.(50|90) (met|MISSED|no number.*)", m[5]), cells
    runs = re.findall(rf"^compile, run (\d) of 2 \(fresh process\): import {NUMBER} s, epoch 1 {NUMBER} s, epoch 2 "
                      rf"{NUMBER} s, epoch 1 - epoch 2 {NUMBER} s \[cpu, 784-16-16-10, batch 32, 8 steps\]", text, re.M)
    assert [r[0] for r in runs] == ["1", "2"], text
    for _, imported, e1, e2, diff in runs:
        assert float(e1) > 0 and float(e2) > 0 and abs(float(e1) - float(e2) - float(diff)) <= 0.0015
    assert re.search(r"^targets \(issue 12\), smoke run:$", text, re.M)
    assert re.search(r"^  captured portanet torch:cpu / PyTorch CUDA graph +batch +8, 784-16-16-10 +<= 1\.30 +- +"
                     r"no number$", text, re.M), text
    assert re.search(r"^total \d+ s$", text, re.M)

    report = json.loads(out_file.read_text())
    assert report["mode"] == "smoke" and len(report["rows"]) == 12 and len(report["compile"]) == 2
    for row, (_, _, name, cells) in zip(report["rows"], rows):
        assert row["contender"] == name.strip()
        if row["error"]:
            assert row["us_per_step"] is None and cells == f"error: {row['error']}"
        else:
            assert len(row["rounds_us"]) == 3 and row["us_per_step"] == statistics.median(row["rounds_us"])
            assert f"{row['us_per_step']:10.1f}" == cells[:10]


class _FakeClock:
    now = 0.0

    def __call__(self):
        return self.now


class _Fake:
    """A contender whose epoch of n steps takes fixed + n * per seconds on a fake clock; fails on run ``fail_at``."""

    def __init__(self, clock, fixed, per, fail_at=None):
        self.clock, self.fixed, self.per, self.fail_at, self.runs = clock, fixed, per, fail_at, 0
        self.prepared, self.closed = set(), False

    def prepare(self, steps):
        self.prepared.add(steps)

    def forget(self, steps):
        self.prepared.discard(steps)

    def sync(self):
        pass

    def run(self, steps):
        assert steps in self.prepared
        self.runs += 1
        if self.runs == self.fail_at:
            raise RuntimeError("device lost\nsecond line")
        self.clock.now += self.fixed + steps * self.per

    def close(self):
        self.closed = True


def test_issue12_bench_measures_the_time_per_step_apart_from_each_call_s_fixed_cost(monkeypatch):
    gpu = _gpu_bench()
    clock = _FakeClock()
    monkeypatch.setattr(gpu, "clock", clock)
    plan = gpu.Plan("full", [(128, 256, 2)], ("gpu", "torch:cuda"), "cuda", seconds=0.25, min_extra=16,
                    max_samples=300_000)
    fakes = {"eager": _Fake(clock, 0.002, 0.0013), "graph": _Fake(clock, 0.030, 0.00014),
             "slow": _Fake(clock, 0.5, 0.005, fail_at=6)}

    def spec(name, role, fake):
        return gpu.Spec(name, role, lambda *args: fake)

    def broken(*args):
        raise ValueError("capture=True needs CUDA")

    results = gpu.measure(plan, [spec("pytorch eager", ("pytorch", "eager"), fakes["eager"]),
                                 spec("pytorch graph", ("pytorch", "graph"), fakes["graph"]),
                                 gpu.Spec("portanet gpu captured", ("portanet", "gpu", "captured"), broken),
                                 spec("slow", ("portanet", "gpu", "eager"), fakes["slow"])],
                          128, [784, 256, 256, 10], None, None)
    eager, graph, refused, slow = results
    # N: about 0.25 s of steps beyond the 8 of the short epoch (0.25 / 0.0013 = 192), at most 300000 / 128 samples
    assert eager.steps == 8 + 192 and graph.steps == 8 + 1786
    for r, fake in ((eager, fakes["eager"]), (graph, fakes["graph"])):
        assert len(r.per_step) == 3 and r.error is None and fake.closed
        assert all(abs(p - fake.per) < 1e-12 for p in r.per_step)
        assert all(abs(f - fake.fixed) < 1e-9 for f in r.fixed)
        assert abs(r.us - 1e6 * fake.per) < 1e-6
    assert abs(gpu.ratio(graph, eager) - 0.00014 / 0.0013) < 1e-9
    assert refused.error == "ValueError: capture=True needs CUDA" and refused.us is None
    assert gpu.ratio(refused, eager) is None and gpu.ratio(eager, refused) is None
    # failed in its first round (run 6: warm-up, two probes, then the round's short and long epochs): one line
    assert slow.error == "RuntimeError: device lost second line" and slow.us is None and fakes["slow"].closed


def test_issue12_bench_full_plan_covers_the_issue_s_grid_headline_first():
    gpu = _gpu_bench()
    args = type("Args", (), dict(smoke=False, quick=False, seconds=None, budget=None, rounds=None))
    plan = gpu.make_plan(args)
    assert plan.configs[:2] == [(128, 256, 2), (1024, 4096, 3)]
    assert sorted(plan.configs) == sorted((b, w, 3 if w == 4096 else 2) for b in (32, 128, 1024)
                                          for w in (256, 1024, 4096))
    assert plan.devices == ("gpu", "torch:cuda") and plan.torch_device == "cuda" and plan.rounds == 3
    goals = {(c, role, against): limit for c, role, against, limit, _ in gpu.targets(plan)}
    assert goals[((128, 256, 2), ("portanet", "gpu", "eager"), "eager")] == 0.5
    assert goals[((1024, 4096, 3), ("portanet", "gpu", "eager"), "eager")] == 0.9
    for which in ("gpu", "torch"):
        assert goals[((128, 256, 2), ("portanet", which, "captured"), "eager")] == 0.15
        assert all(goals[(c, ("portanet", which, "captured"), "graph")] == 1.3 for c in plan.configs)
    assert len(goals) == 2 + 2 * (9 + 1)


def test_offline_targets_skip_with_the_reason_where_no_device_is_seen():
    # CUDA_VISIBLE_DEVICES="" hides every GPU from CuPy and PyTorch alike, so this holds on a CUDA machine too
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPU_PY": sys.executable}
    for target in ("test-gpu", "bench-gpu"):
        out = subprocess.run(["sh", os.path.join(ROOT, "benchmarks", "offline_cuda.sh"), target], capture_output=True,
                             text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        assert re.fullmatch(rf"{target} skipped: no CUDA device \({re.escape(sys.executable)}: CuPy: .+; "
                            r"PyTorch.+\)\n", out.stdout), out.stdout


def test_cnn_row_runs_and_starts_pytorch_from_portanets_weights():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--cnn", "--epochs", "2",
                          "--cnn-images", "256"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = re.search(r"\(i\) CNN, batch 128, 256 images +portanet +(\d+\.\d+)s +pytorch +(\d+\.\d+)s +ratio (\d+\.\d+) +"
                    r"gemm-bound +(\d+\.\d+)s +ratio (\d+\.\d+) +\| test acc portanet (\d+\.\d+)% pytorch (\d+\.\d+)%",
                    out.stdout)
    assert row, out.stdout
    assert all(float(v) > 0 for v in row.groups()[:5])
    # the same initial weights and batches: the two frameworks end within a point of each other
    assert abs(float(row[6]) - float(row[7])) < 1.0
    assert re.search(r"\(i\) rounds outside slow spells +[12] of 2 rounds .*portanet/pytorch \d+\.\d+", out.stdout)
