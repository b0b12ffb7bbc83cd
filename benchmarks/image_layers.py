"""Where a DCGAN-28 training step's time goes, layer by layer, against the machine's matmul peak.

For each convolution of the default `dcgan` preset (width 32, batch 64, channels-last as the project runs them) it
times forward + backward (input and weight gradients) and prints achieved GFLOP/s as a share of a float32 matmul
peak measured in the same run; then the same for the layer's work done as plain GEMMs (im2col-free, the best a
re-implementation could hope for).  It backs the image_throughput finding: the large layers already run near the
GEMM rate, the rest of the step is small memory-bound layers.

    python benchmarks/image_layers.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.nn.functional as F

from common import matmul_peak_gflops, say

BATCH = 64
# (name, transposed, in channels, out channels, input side)
LAYERS = [("G convT 128→64 (7→14)", True, 128, 64, 7), ("G convT 64→1 (14→28)", True, 64, 1, 14),
          ("D conv 1→32 (28→14)", False, 1, 32, 28), ("D conv 32→64 (14→7)", False, 32, 64, 14)]


def timed(fn, repeats):
    for _ in range(3):
        fn()
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        samples.append((time.perf_counter() - t) / repeats)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    say(f"matmul peak {peak:.0f} GFLOP/s; threads {torch.get_num_threads()}; batch {BATCH}, channels-last")
    say(f"{'layer':24s} {'MFLOP':>7s} {'ms':>6s} {'GFLOP/s':>8s} {'% peak':>7s} {'as GEMMs':>9s}")
    for name, transposed, cin, cout, side in LAYERS:
        x = torch.randn(BATCH, cin, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
        shape = (cin, cout, 4, 4) if transposed else (cout, cin, 4, 4)
        w = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        conv = F.conv_transpose2d if transposed else F.conv2d
        y = conv(x, w, None, 2, 1)
        grad = torch.randn_like(y)
        macs = 16 * cin * cout * (side * side if transposed else y.shape[-1] * y.shape[-2]) * BATCH
        flops = 3 * 2 * macs  # forward, input gradient, weight gradient

        def step():
            torch.autograd.grad(conv(x, w, None, 2, 1), (x, w), grad)

        # the same MACs as three GEMMs of the layer's natural shapes (rows = output or input positions)
        rows = macs // (16 * cin * cout)
        a, b, c = torch.randn(rows, cin * 16), torch.randn(cin * 16, cout), torch.randn(rows, cout)
        gemm = timed(lambda: (a @ b, c @ b.t(), a.t() @ c), args.repeats)
        seconds = timed(step, args.repeats)
        rate = flops / seconds / 1e9
        say(f"{name:24s} {flops / 1e6:7.0f} {seconds * 1e3:6.2f} {rate:8.1f} {100 * rate / peak:6.0f}% "
            f"{100 * flops / gemm / 1e9 / peak:8.0f}%")


if __name__ == "__main__":
    main()
