"""Hop-Diffused Attention speed and memory: mmbench's sparse implementation against the dense reference.

Graphs: one random graph per size N (default 16, 256, 4,096 nodes): 4 N random node pairs, both directions, so
about 8 incoming edges per node (duplicates and self-loops removed). h (N, d) random, d 256, 8 heads, alpha 0.1,
K = 2 diffusion steps (k = 0, 1, 2), residual, no self-loops: ``HopDiffusedAttention`` defaults except d/heads.

Peers, all with the same parameters and inputs:
  csr     ``HopDiffusedAttention`` (backend "csr"): per-edge scores by ``torch.sparse.sampled_addmm``, edge
          softmax by scatter, then X_{k+1} = A X_k as sparse CSR (N, N) @ (N, d) products; A never dense.
  gather  the same module with backend "gather": per-edge scores and messages via index / index_add, i.e. it
          materialises (M, d) tensors.
  dense   ``dense_hop_diffusion`` (the reference): builds a boolean (N, N) adjacency mask, scores (H, N, N) =
          Q K^T / sqrt(d_head) masked to -inf off the edges, softmax per row, head mean A (N, N), A^2 .. A^K by
          (N, N) @ (N, N) products (as the public code's ``torch.matrix_power``), A_diff = sum theta_k A^k,
          output h + A_diff h.
Modes: "fwd" (no autograd graph) and "fwd+bwd" (loss <out, g> for a fixed random g, backward into h and the q/k
parameters).

Time: median wall time of ``--repeats`` runs (3 when one run takes over 5 s) after one warm run.
Memory: every (size, peer, mode) runs in a fresh subprocess with one thread; after building the inputs and a
warm-up on a 16-node graph it resets the kernel's peak-RSS mark (``/proc/self/clear_refs``, falls back to
``ru_maxrss``), runs once, and reports VmHWM - VmRSS before the run: the peak resident-memory growth of one call,
in MiB (page-granular and noisy below ~1 MiB: the 16-node runs read as 0, since freed heap pages get reused).
The parent also checks that the peers' outputs agree (max |diff| against dense).

    OMP_NUM_THREADS=1 .venv/bin/python bench/hop_diffusion_speed.py [--sizes 16 256 4096] [--no-backward]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS = ("csr", "gather", "dense")


def random_graph(n: int, seed: int = 0):
    """~8 in-edges per node: (2, M) long, symmetric, no self-loops or duplicates."""
    import torch

    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, n, (2, 4 * n), generator=g)
    edges = torch.cat([pairs, pairs.flip(0)], 1)
    edges = edges[:, edges[0] != edges[1]]
    return torch.unique(edges, dim=1)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(peer: str, n: int, mode: str, dim: int, heads: int, steps: int, repeats: int, out_path: str) -> dict:
    import torch

    from mmbench.models.graph4mm_layers import HopDiffusedAttention, dense_hop_diffusion

    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = HopDiffusedAttention(dim, heads=heads, steps=steps, backend="gather" if peer == "gather" else "csr")
    edges = random_graph(n)
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(n, dim, generator=gen)
    g = torch.randn(n, dim, generator=gen)

    def call(x, e, grad):
        if mode == "fwd":
            with torch.no_grad():
                return module(x, e) if peer != "dense" else dense_hop_diffusion(module, x, e)
        x = x.detach().requires_grad_(True)
        out = module(x, e) if peer != "dense" else dense_hop_diffusion(module, x, e)
        (out * grad).sum().backward()
        module.zero_grad(set_to_none=True)
        return out.detach()

    call(h[:16], random_graph(16, seed=3), g[:16])                  # warm-up: kernels, thread pools
    exact = _reset_peak()
    before_rss, before_max = _rss_kib("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = call(h, edges, g)
    first = time.perf_counter() - t0
    peak = _rss_kib("VmHWM") - before_rss if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_max
    torch.save(out, out_path)
    times = []
    for _ in range(repeats if first < 5 else min(repeats, 3)):
        t0 = time.perf_counter()
        call(h, edges, g)
        times.append(time.perf_counter() - t0)
    return dict(peer=peer, n=n, mode=mode, edges=edges.size(1), time_s=statistics.median(times), runs=len(times),
                peak_mib=max(peak, 0) / 1024, peak_exact=exact)


def run_all(args) -> list[dict]:
    import torch

    modes = ["fwd"] if args.no_backward else ["fwd", "fwd+bwd"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for mode in modes:
                outs = {}
                for peer in PEERS:
                    path = str(Path(tmp) / f"{peer}-{n}-{mode}.pt")
                    cmd = [sys.executable, __file__, "--worker", peer, str(n), mode, path, "--dim", str(args.dim),
                           "--heads", str(args.heads), "--steps", str(args.steps), "--repeats", str(args.repeats)]
                    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                    if res.returncode:
                        raise SystemExit(f"worker {peer} N={n} {mode} failed:\n{res.stderr}")
                    row = json.loads(res.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    outs[peer] = (row, path)
                    print(f"  N={n:>5} {mode:<7} {peer:<6} {row['time_s'] * 1e3:10.2f} ms {row['peak_mib']:9.1f} MiB",
                          file=sys.stderr, flush=True)
                ref = torch.load(outs["dense"][1])
                for peer in ("csr", "gather"):
                    row, path = outs[peer]
                    row["max_diff"] = (torch.load(path) - ref).abs().max().item()
                    if row["max_diff"] > 1e-3:
                        raise SystemExit(f"{peer} disagrees with dense at N={n} ({mode}): {row['max_diff']:.2e}")
    return rows


def report(rows: list[dict]) -> None:
    print(f"{'N':>6} {'edges':>7} {'mode':<8} {'peer':<7} {'time ms':>11} {'peak MiB':>9} {'KiB/edge':>9} "
          f"{'max|diff| vs dense':>19}")
    for r in rows:
        diff = f"{r['max_diff']:.1e}" if "max_diff" in r else "-"
        print(f"{r['n']:>6} {r['edges']:>7} {r['mode']:<8} {r['peer']:<7} {r['time_s'] * 1e3:>11.2f} "
              f"{r['peak_mib']:>9.1f} {r['peak_mib'] * 1024 / r['edges']:>9.2f} {diff:>19}")
    print("\nratio dense / csr (dense / gather)")
    print(f"{'N':>6} {'mode':<8} {'time':>18} {'peak memory':>22}")
    by = {(r["n"], r["mode"], r["peer"]): r for r in rows}
    for n, mode in dict.fromkeys((r["n"], r["mode"]) for r in rows):
        d, c, g = by[n, mode, "dense"], by[n, mode, "csr"], by[n, mode, "gather"]

        def ratio(key, a, b=d):
            return f"{b[key] / a[key]:.1f}x" if a[key] > 0 else "n/a"

        print(f"{n:>6} {mode:<8} {ratio('time_s', c):>9} ({ratio('time_s', g):>7}) "
              f"{ratio('peak_mib', c):>11} ({ratio('peak_mib', g):>8})")
    if not all(r["peak_exact"] for r in rows):
        print("(peak memory from ru_maxrss growth: /proc/self/clear_refs was not writable)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 4096])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--worker", nargs=4, metavar=("PEER", "N", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        peer, n, mode, out = args.worker
        print(json.dumps(worker(peer, int(n), mode, args.dim, args.heads, args.steps, args.repeats, out)))
        return
    report(run_all(args))


if __name__ == "__main__":
    main()
