#!/usr/bin/python3
"""PyTorch side of `npm run bench:kernels`: times torch.mm on the cases bench/kernels.ts sends.

Protocol (JSON lines): on start, one line describing torch and the BLAS it runs on, or
{"error": ...} and exit status 3 when that BLAS is not an optimised one (the reference BLAS is
refused). Then, per input line {"m", "k", "n", "transA", "transB", "minTime"}, one line
{"seconds": per-call time of the fastest trial, "cpu_seconds": this process's CPU time per call in
that trial, all its threads (OpenBLAS's spinning included)}. Operands are stored as rmt stores them (A [k, m]
when transA, B [n, k] when transB) and passed to torch.mm as transposed views, so sgemm gets the
transpose flags and nothing is copied.

Usage: /usr/bin/python3 bench/torch_kernels.py --threads 2      (Debian python3-torch with
libopenblas0-pthread; `--info` prints the BLAS description and exits).

`--device cuda` (bench/kernels.ts --backend webgpu) times the same on the GPU in true float32 (TF32
off): the header names the GPU and CUDA instead of the BLAS ({"error": ...} and status 3 without
CUDA), operands live on the device, and a trial is `calls` launches between two synchronizations,
with `calls` grown until a trial lasts minTime, so the time counts the GPU's work and not only the
launches.
"""

import argparse
import ctypes
import json
import os
import sys
import time


def loaded_libs():
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/"):
                libs.add(os.path.realpath(parts[5]))
    return libs


def describe_blas(torch, threads):
    """Which BLAS torch.mm runs on, after one call has loaded it; raises SystemExit on a bad one."""
    a = torch.randn(64, 64)
    torch.mm(a, a)
    libs = loaded_libs()
    openblas = sorted(p for p in libs if "openblas" in os.path.basename(p).lower())
    mkl = sorted(p for p in libs if "mkl" in os.path.basename(p).lower())
    blas_like = sorted(p for p in libs if "blas" in os.path.basename(p).lower())
    info = {"libs": blas_like + mkl}
    if openblas:
        lib = ctypes.CDLL(openblas[0])
        for name in ("openblas_get_config", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                info[name.replace("openblas_get_", "")] = fn().decode()
        setter = getattr(lib, "openblas_set_num_threads", None)
        if setter is not None:
            setter(threads)
        getter = getattr(lib, "openblas_get_num_threads", None)
        if getter is not None:
            info["threads"] = getter()
        info["name"] = "OpenBLAS"
        info["path"] = openblas[0]
        return info
    if mkl:
        info["name"] = "MKL"
        info["path"] = mkl[0]
        return info
    reason = (
        "PyTorch runs on the reference BLAS (%s), which is 30-50x slower than OpenBLAS and no fair "
        "baseline. Install OpenBLAS: apt-get install -y libopenblas0-pthread"
        % (", ".join(blas_like) or "no optimised BLAS loaded")
    )
    print(json.dumps({"error": reason}), flush=True)
    print("torch_kernels.py: " + reason, file=sys.stderr)
    raise SystemExit(3)


def time_case(torch, case):
    m, k, n = case["m"], case["k"], case["n"]
    a = torch.randn(k, m) if case.get("transA") else torch.randn(m, k)
    b = torch.randn(n, k) if case.get("transB") else torch.randn(k, n)
    A = a.t() if case.get("transA") else a
    B = b.t() if case.get("transB") else b
    out = torch.empty(m, n)
    min_time = float(case.get("minTime", 0.2))
    trials = int(case.get("trials", 1))
    for _ in range(2):
        torch.mm(A, B, out=out)
    best = float("inf")
    best_cpu = float("inf")
    for _ in range(trials):
        calls = 0
        c0 = time.process_time()
        t0 = time.perf_counter()
        while True:
            torch.mm(A, B, out=out)
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        if dt / calls < best:
            best = dt / calls
            best_cpu = (time.process_time() - c0) / calls
    return best, best_cpu


def cuda_header(torch):
    """Describes the GPU after turning TF32 off; raises SystemExit without CUDA."""
    if not torch.cuda.is_available():
        reason = "CUDA requested but torch.cuda.is_available() is false (torch %s)" % torch.__version__
        print(json.dumps({"error": reason}), flush=True)
        print("torch_kernels.py: " + reason, file=sys.stderr)
        raise SystemExit(3)
    # TF32 rounds the operands to 10 mantissa bits: rmt computes in float32, so the baseline must too
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return {
        "torch": torch.__version__,
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(0),
        "cuda": torch.version.cuda,
        "tf32": {
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32),
        },
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("CUDA_", "CUBLAS_", "NVIDIA_"))},
    }


def time_case_cuda(torch, case):
    m, k, n = case["m"], case["k"], case["n"]
    dev = torch.device("cuda")
    a = torch.randn(k, m, device=dev) if case.get("transA") else torch.randn(m, k, device=dev)
    b = torch.randn(n, k, device=dev) if case.get("transB") else torch.randn(k, n, device=dev)
    A = a.t() if case.get("transA") else a
    B = b.t() if case.get("transB") else b
    out = torch.empty(m, n, device=dev)
    min_time = float(case.get("minTime", 0.2))
    trials = int(case.get("trials", 1))
    for _ in range(2):
        torch.mm(A, B, out=out)

    def run(calls):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            torch.mm(A, B, out=out)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    calls = int(case.get("calls", 1))
    dt = run(calls)
    # a host-timed loop would only count launches: grow the launch count between synchronizations
    while dt < min_time:
        calls = min(calls * 100, max(calls + 1, int(calls * 1.2 * min_time / max(dt, 1e-7))))
        dt = run(calls)
    best = dt / calls
    for _ in range(trials - 1):
        best = min(best, run(calls) / calls)
    return best, calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--info", action="store_true")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    import torch

    if args.device == "cuda":
        print(json.dumps(cuda_header(torch)), flush=True)
        if args.info:
            return
        with torch.no_grad():
            for line in sys.stdin:
                line = line.strip()
                if line:
                    seconds, calls = time_case_cuda(torch, json.loads(line))
                    print(json.dumps({"seconds": seconds, "calls": calls}), flush=True)
        return
    torch.set_num_threads(args.threads)
    blas = describe_blas(torch, args.threads)
    header = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas,
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
    }
    print(json.dumps(header), flush=True)
    if args.info:
        return
    with torch.no_grad():
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            case = json.loads(line)
            seconds, cpu_seconds = time_case(torch, case)
            print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}), flush=True)


if __name__ == "__main__":
    main()
