"""Training-step throughput while another process keeps a CPU busy (issue 16).

    python bench/report_contention.py [--models mlp,cnn] [--batch 64] [--rounds 3]

Starts a competing busy process itself (a pure-Python spin loop, unniced) and times, each
in its own worker process (bench/report_train.py --worker), in alternating blocks:
cygrad with its default settings (2 threads, team capped at the CPUs other processes
leave free), cygrad --threads 1, cygrad on 2 threads with the cap off
(CYGRAD_ADAPTIVE_THREADS=0: the fork-join collapse it prevents), and torch on 2 and 1
threads. Then the same without the competitor. Prints images/s (median) and each
figure over the same library's 1-thread figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "report_train.py")

# name -> (worker implementation, threads, extra environment)
VARIANTS = {
    "cygrad default (2 threads)": ("cygrad", 2, {}),
    "cygrad --threads 1": ("cygrad", 1, {}),
    "cygrad 2 threads, cap off": ("cygrad", 2, {"CYGRAD_ADAPTIVE_THREADS": "0"}),
    "torch 2 threads": ("torch", 2, {"CYGRAD_MALLOC_TUNING": "0"}),
    "torch 1 thread": ("torch", 1, {"CYGRAD_MALLOC_TUNING": "0"}),
}


def block(impl, threads, extra, model, batch, steps, repeats):
    """Median seconds per step of one worker process."""
    env = dict(os.environ, **extra)
    out = subprocess.run([sys.executable, TRAIN, "--worker", impl, model, str(batch), str(threads),
                          str(steps), str(repeats)], capture_output=True, text=True, env=env,
                         check=True, timeout=600)
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1])["times"])


def measure(models, batch, rounds, repeats, settle):
    rows = {}
    for model in models:
        steps = 40 if model == "mlp" else 4
        times = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name, (impl, threads, extra) in VARIANTS.items():
                time.sleep(settle)
                times[name].append(block(impl, threads, extra, model, batch, steps, repeats))
        rows[model] = {name: batch / statistics.median(t) for name, t in times.items()}
    return rows


def table(rows, title):
    print(f"\n{title} (images/s, median; ratio: over the same library's 1-thread figure)")
    print("| model | " + " | ".join(VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    for model, r in rows.items():
        c1, t1 = r["cygrad --threads 1"], r["torch 1 thread"]
        cells = []
        for name, v in r.items():
            base = t1 if name.startswith("torch") else c1
            cells.append(f"{v:,.0f} ({v / base:.2f}x)")
        print(f"| {model} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settle", type=float, default=0.5)
    args = p.parse_args()
    models = args.models.split(",")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        busy = measure(models, args.batch, args.rounds, args.repeats, args.settle)
    finally:
        spinner.kill()
        spinner.wait()
    time.sleep(2.0)
    quiet = measure(models, args.batch, args.rounds, args.repeats, args.settle)
    print(f"batch {args.batch}, {os.cpu_count()} CPUs, {args.rounds} alternating blocks")
    table(busy, "with one competing busy process")
    table(quiet, "without it")


if __name__ == "__main__":
    main()
