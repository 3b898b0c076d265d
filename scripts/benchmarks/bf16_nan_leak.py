"""Can one row's NaN reach another row's output in the engine's bf16 attention products on this CPU?

The cold-run defect in docs/known-issues.md changed one prompt's rows of a batch. oneDNN issue 5717 reports
that an AMX bf16 matmul with K > 32 and K % 32 != 0 reads neighbouring rows, so a NaN or Inf in one row
(a fully masked attention row's softmax is NaN) can leak into others. The fused step's P·V product has
K = the cache width, a multiple of ``kv.KV_BUCKET`` (16), so half of its widths have K % 32 == 16.

This checks, for the fused step's shapes (rows x 3 query heads per KV head, head dim 64), every K from 33
to 128 and some wider: a NaN row is planted, and every other row must stay finite, match a float32
reference, and be byte-identical to the same product without the NaN row. It prints the ISA oneDNN runs
(``ONEDNN_VERBOSE=1`` shows the kernel) and the shapes that fail. ``python scripts/benchmarks/bf16_nan_leak.py``.
"""

from __future__ import annotations

import argparse

import torch


def check(rows: int, width: int, bad_row: int, heads: int = 3, head_dim: int = 64) -> list[str]:
    """What goes wrong for one shape: rows other than ``bad_row`` that turned non-finite, moved, or differ."""
    gen = torch.Generator().manual_seed(width * 1000 + rows)
    p = torch.softmax(torch.randn(rows, heads, width, generator=gen), -1).to(torch.bfloat16)
    v = torch.randn(rows, width, head_dim, generator=gen).to(torch.bfloat16)
    clean = torch.bmm(p, v)
    p[bad_row] = float("nan")
    out = torch.bmm(p, v)
    others = [i for i in range(rows) if i != bad_row]
    problems = []
    if not torch.isfinite(out[others]).all():
        problems.append("NaN reached other rows")
    if not torch.equal(out[others], clean[others]):
        problems.append("other rows changed")
    ref = torch.bmm(p[others].float(), v[others].float())
    if (out[others].float() - ref).abs().max().item() > 0.05:
        problems.append("far from the float32 reference")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="3,24,96,288", help="batch rows x KV heads, comma-separated")
    args = ap.parse_args()
    widths = list(range(33, 129)) + [160, 176, 208, 240, 272, 304, 496, 1008]
    failures = []
    for rows in (int(r) for r in args.rows.split(",")):
        for width in widths:
            for bad in sorted({0, rows // 2, rows - 1}):
                if problems := check(rows, width, bad):
                    failures.append((rows, width, bad, problems))
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{len(widths)} widths x {args.rows} rows: {len(failures)} failing shape(s)")
    for f in failures[:20]:
        print("  rows %d, K %d, NaN in row %d: %s" % (f[0], f[1], f[2], "; ".join(f[3])))


if __name__ == "__main__":
    main()
