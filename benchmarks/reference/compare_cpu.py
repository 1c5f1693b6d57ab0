#!/usr/bin/env python3
"""The CPU training step of cvae-engine against PyTorch (eager and torch.compile) and
TensorFlow (tf.function, the seed tutorial's own code), run alternately in one
invocation, repeated, and summarised as medians and ratios.

    pip install torch tensorflow-cpu
    python3 benchmarks/reference/compare_cpu.py [--build build] [--rounds 3] [--steps 30]
        [--threads 2] [--isa auto|avx2] [--busy | --contention] [--only ours,eager,compile,tf]

Each round runs every program once, in turn (A B C D A B C D ...); each program warms
up, then times 5 repeats of --steps steps and reports its median repeat (ms/step), so
a figure here is the median over rounds of those medians, with the range beside it.
--isa avx2 keeps every library to AVX2 on an AVX-512 machine (CVAE_CPU_ISA=avx2,
ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2): the code paths an AVX2-only
CPU runs, on this CPU's cores. --busy runs one other CPU-bound process throughout (a
plain spinning loop); --contention runs every program twice a round, alone and beside
such a process, and reports each one's slowdown. Prints the machine, the versions, a
table of ms per step and the ratios of cvae-engine to each.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHAPES = ((100, 50), (32, 2))
LINE = re.compile(r"batch\s+(\d+)\s+latent\s+(\d+):\s+([\d.]+) ms/step")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor()
    name = re.search(r"model name\s*:\s*(.*)", info)
    flags = re.search(r"flags\s*:\s*(.*)", info)
    isa = "AVX-512" if flags and "avx512f" in flags.group(1).split() else \
        "AVX2" if flags and "avx2" in flags.group(1).split() else "no AVX2"
    return "%s (%s), %d cores" % (name.group(1) if name else "?", isa, os.cpu_count() or 0)


def commands(args):
    py = sys.executable
    shapes = ",".join("%dx%d" % s for s in SHAPES)
    steps = ["--steps", str(args.steps)]
    return {
        "ours": [os.path.join(args.build, "benchmarks", "bench_train_step"), "--threads",
                 str(args.threads), "--shapes", shapes] + steps,
        "eager": [py, os.path.join(HERE, "bench_step_pytorch.py"), "--threads", str(args.threads),
                  "--shapes", shapes] + steps,
        "compile": [py, os.path.join(HERE, "bench_step_pytorch.py"), "--threads",
                    str(args.threads), "--compile", "--shapes", shapes] + steps,
        "tf": [py, os.path.join(HERE, "bench_step_tf.py"), "--threads", str(args.threads),
               "--shapes", shapes] + steps,
    }


LABELS = {"ours": "cvae-engine", "eager": "PyTorch eager", "compile": "torch.compile",
          "tf": "TF tf.function"}


def run(name, cmd, env):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {}
    for line in p.stdout.splitlines():
        m = LINE.search(line)
        if m:
            out[(int(m.group(1)), int(m.group(2)))] = float(m.group(3))
    if p.returncode != 0 or len(out) != len(SHAPES):
        tail = "\n".join(p.stdout.splitlines()[-5:])
        raise SystemExit("compare_cpu: %s failed (exit %d):\n%s" % (name, p.returncode, tail))
    return out


def versions():
    v = {}
    for mod in ("torch", "tensorflow"):
        try:
            p = subprocess.run([sys.executable, "-c", "import %s; print(%s.__version__)" % (mod, mod)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            v[mod] = p.stdout.strip() or "not installed"
        except OSError:
            v[mod] = "not installed"
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", default="auto", choices=("auto", "avx2"))
    ap.add_argument("--busy", action="store_true", help="one other busy process throughout")
    ap.add_argument("--contention", action="store_true",
                    help="each program alone and beside a busy process, every round")
    ap.add_argument("--only", default="ours,eager,compile,tf")
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TF_CPP_MIN_LOG_LEVEL="2")
    if args.isa == "avx2":
        env.update(CVAE_CPU_ISA="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    cmds = {k: v for k, v in commands(args).items() if k in args.only.split(",")}
    print("machine: %s; %s" % (cpu_model(), platform.platform()))
    print("versions: %s; code paths: %s; threads %d; %d rounds x (5 repeats of %d steps)%s"
          % (", ".join("%s %s" % kv for kv in versions().items()),
             "AVX2 forced" if args.isa == "avx2" else "each library's best",
             args.threads, args.rounds, args.steps, "; one busy process alongside" if args.busy else ""))
    spin = [sys.executable, "-c", "while True: pass"]
    busy = subprocess.Popen(spin) if args.busy else None
    results = {k: [] for k in cmds}
    loaded = {k: [] for k in cmds}
    try:
        for r in range(args.rounds):
            for name, cmd in cmds.items():
                results[name].append(run(name, cmd, env))
                print("  round %d %-14s %s" % (r + 1, LABELS[name], "  ".join(
                    "%dx%d %.2f ms" % (b, l, results[name][-1][(b, l)]) for b, l in SHAPES)), flush=True)
                if args.contention:
                    other = subprocess.Popen(spin)
                    try:
                        loaded[name].append(run(name, cmd, env))
                    finally:
                        other.kill()
                        other.wait()
                    print("  round %d %-14s %s  (beside a busy process)" % (r + 1, LABELS[name], "  ".join(
                        "%dx%d %.2f ms" % (b, l, loaded[name][-1][(b, l)]) for b, l in SHAPES)), flush=True)
    finally:
        if busy:
            busy.kill()
    if args.contention:
        print()
        print("| slowdown beside one busy process (median of per-round ratios) | " +
              " | ".join(LABELS[k] for k in cmds) + " |")
        print("|---|" + "---|" * len(cmds))
        for shape in SHAPES:
            cells = ["%.2fx" % statistics.median([b[shape] / a[shape] for a, b in zip(results[k], loaded[k])])
                     for k in cmds]
            print("| batch %d, latent %d | %s |" % (shape[0], shape[1], " | ".join(cells)))
    print()
    print("| step, ms (median of rounds, range) | " + " | ".join(LABELS[k] for k in cmds) + " |")
    print("|---|" + "---|" * len(cmds))
    for shape in SHAPES:
        cells = []
        for k in cmds:
            v = [res[shape] for res in results[k]]
            cells.append("%.2f (%.2f-%.2f)" % (statistics.median(v), min(v), max(v)))
        print("| batch %d, latent %d | %s |" % (shape[0], shape[1], " | ".join(cells)))
    if "ours" in cmds:
        print()
        print("| ratio: other / cvae-engine (median of per-round ratios) | " +
              " | ".join(LABELS[k] for k in cmds if k != "ours") + " |")
        print("|---|" + "---|" * (len(cmds) - 1))
        for shape in SHAPES:
            cells = []
            for k in cmds:
                if k == "ours":
                    continue
                ratios = [res[shape] / ours[shape] for res, ours in zip(results[k], results["ours"])]
                cells.append("%.2fx" % statistics.median(ratios))
            print("| batch %d, latent %d | %s |" % (shape[0], shape[1], " | ".join(cells)))


if __name__ == "__main__":
    main()
