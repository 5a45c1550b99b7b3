"""Print the conv/pool comparison table: median ms of cygrad, the NumPy reference and
PyTorch side by side (forward + backward of the seed CNN's layers), then conv2's
GFLOP/s against the GEMM's own at conv2's im2col shape.

    python bench/report_conv.py [--repeat 11] [--threads 2,1] [--batches 32,64,256]
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for NumPy's best kernel.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_cases import OPS, conv2_flops, gemm_runner, runners  # noqa: E402
from report_gemm import block_medians  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--threads", default="2,1")
    p.add_argument("--batches", default="32,64,256")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    print("| op (fwd+bwd) | batch | threads | cygrad ms | reference ms | torch ms "
          "| reference/cygrad | torch/cygrad |")
    print("|---|---|---|---|---|---|---|---|")
    for nt in threads:
        for batch in batches:
            for op in OPS:
                med = block_medians(runners(op, batch, nt), args.repeat)
                t = med.get("torch")
                print(f"| {op} | {batch} | {nt} | {med['cygrad'] * 1e3:.3f} | "
                      f"{med['reference'] * 1e3:.2f} | {'%.3f' % (t * 1e3) if t else '-'} | "
                      f"{med['reference'] / med['cygrad']:.1f} | "
                      f"{'%.2f' % (t / med['cygrad']) if t else '-'} |", flush=True)
    print("\n| conv2 fwd+bwd | batch | threads | conv GFLOP/s | GEMM GFLOP/s (im2col shape) | gap |")
    print("|---|---|---|---|---|---|")
    for nt in threads:
        for batch in batches:
            # timed in turn with the same three GEMMs at the whole batch's im2col shape
            med = block_medians({"conv": runners("conv2", batch, nt)["cygrad"],
                                       "gemm": gemm_runner(batch, nt)}, args.repeat)
            gf, ggf = (conv2_flops(batch) / med[k] / 1e9 for k in ("conv", "gemm"))
            print(f"| conv2 | {batch} | {nt} | {gf:.0f} | {ggf:.0f} | {1 - gf / ggf:.0%} |", flush=True)


if __name__ == "__main__":
    main()
