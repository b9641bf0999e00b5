"""PyTorch baseline of bench/model.ts: the same decoder (Llama / Qwen2 / Qwen3 style, as rmt and
scripts/torch_ref implement it) in plain float32 torch, eager mode, on CPU or CUDA.

Measures, per model:
- learner step tokens/s: forward + weighted next-token loss + backward + global-norm clipping +
  torch.optim.AdamW (its default implementation), batch x seq tokens per step, with the loss read on
  the host every step (as rmt reads it);
- generation tokens/s: greedy decoding of G sequences with a KV cache of its own (prefill of the
  prompt, then one token per step; each step's next tokens are read on the host), counted as
  G * new_tokens / (prefill + decode time).

Driven by bench/model.ts over stdin/stdout, one JSON object a line: first the spec (device, threads,
optimizer), answered with {"info": ...}; then one command per round and case ({"model", "config",
"kind": "train"|"generate", shapes, "warmup", "repeats"}), answered with {"seconds": [...],
"params", "max_rss_mib", "loss": [first, last]}. A case's model, optimizer state and data are built
on its first command and kept for its later rounds. On CPU it checks which BLAS PyTorch uses and
refuses the reference BLAS (exit status 3). On CUDA, TF32 is turned off so matrix products run in
true float32.

Works with torch 1.13 (Debian python3-torch) and torch 2.x.
"""

import json
import math
import os
import platform
import statistics
import sys
import time


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def configure_threads(spec):
    """Thread counts must be set before torch (and its BLAS) is loaded."""
    threads = spec.get("threads")
    if spec.get("device", "cpu") == "cpu" and threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)


# ----------------------------------------------------------------------------------------------
# BLAS check (CPU)

REFERENCE_BLAS_HINT = (
    "PyTorch is using the reference BLAS (Debian libblas3), which is 30-50x slower than OpenBLAS and "
    "would make a meaningless baseline. Install OpenBLAS (apt-get install -y libopenblas0-pthread) so "
    "that the libblas.so.3 alternative points at it (update-alternatives --display "
    "libblas.so.3-x86_64-linux-gnu), or use a PyTorch build with MKL."
)


def mapped_libraries():
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if ".so" in line and "/" in line})
    except OSError:
        return []


def blas_info(torch):
    """Which BLAS serves float32 matmul in this process: ('mkl'|'openblas'|'reference'|'unknown', detail)."""
    a = torch.randn(256, 256)
    (a @ a).sum().item()  # make sure the BLAS is loaded
    libs = mapped_libraries()
    openblas = [p for p in libs if "openblas" in p.lower()]
    reference = [p for p in libs if "/blas/libblas" in p or p.endswith("/libblas.so.3") and "openblas" not in p]
    if openblas:
        return "openblas", openblas[0]
    if torch.backends.mkl.is_available():
        return "mkl", "MKL (linked into torch)"
    if reference:
        return "reference", reference[0]
    return "unknown", "no BLAS library found among the mapped libraries"


def sgemm_gflops(torch, device, n=1024, reps=5):
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(torch, device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(torch, device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------
# The model


def has_qk_norm(c):
    return c["model_type"] == "qwen3"


def has_qkv_bias(c):
    return c["model_type"] == "qwen2" or bool(c.get("attention_bias", False))


def has_o_bias(c):
    return c["model_type"] != "qwen2" and bool(c.get("attention_bias", False))


def param_shapes(c):
    """(name, shape, init, decay) in the order of shared/model/params.ts."""
    D, hd, I = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    qd, kvd = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (c["vocab_size"], D), "normal", True)]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out.append((f"{p}.input_layernorm.weight", (D,), "ones", False))
        out.append((f"{p}.self_attn.q_proj.weight", (qd, D), "normal", True))
        out.append((f"{p}.self_attn.k_proj.weight", (kvd, D), "normal", True))
        out.append((f"{p}.self_attn.v_proj.weight", (kvd, D), "normal", True))
        if has_qkv_bias(c):
            for n, d in (("q", qd), ("k", kvd), ("v", kvd)):
                out.append((f"{p}.self_attn.{n}_proj.bias", (d,), "zeros", False))
        if has_qk_norm(c):
            out.append((f"{p}.self_attn.q_norm.weight", (hd,), "ones", False))
            out.append((f"{p}.self_attn.k_norm.weight", (hd,), "ones", False))
        out.append((f"{p}.self_attn.o_proj.weight", (D, qd), "normal", True))
        if has_o_bias(c):
            out.append((f"{p}.self_attn.o_proj.bias", (D,), "zeros", False))
        out.append((f"{p}.post_attention_layernorm.weight", (D,), "ones", False))
        out.append((f"{p}.mlp.gate_proj.weight", (I, D), "normal", True))
        out.append((f"{p}.mlp.up_proj.weight", (I, D), "normal", True))
        out.append((f"{p}.mlp.down_proj.weight", (D, I), "normal", True))
    out.append(("model.norm.weight", (D,), "ones", False))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (c["vocab_size"], D), "normal", True))
    return out


class Model:
    def __init__(self, torch, c, device, seed=1234, std=0.02):
        self.torch = torch
        self.c = c
        self.device = device
        g = torch.Generator().manual_seed(seed)
        self.specs = param_shapes(c)
        self.params = {}
        for name, shape, init, _ in self.specs:
            if init == "ones":
                t = torch.ones(shape)
            elif init == "zeros":
                t = torch.zeros(shape)
            else:
                t = torch.randn(shape, generator=g) * std
            self.params[name] = t.to(device).requires_grad_(True)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        pos = torch.arange(c["max_position_embeddings"], dtype=torch.float64)[:, None] * inv
        emb = torch.cat((pos, pos), dim=-1)
        self.cos = emb.cos().float().to(device)  # [max_pos, hd]
        self.sin = emb.sin().float().to(device)

    def head(self):
        p = self.params
        return p["model.embed_tokens.weight"] if self.c["tie_word_embeddings"] else p["lm_head.weight"]

    def rms(self, x, w):
        return x * self.torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]) * w

    def lin(self, x, name):
        y = x @ self.params[name + ".weight"].t()
        b = self.params.get(name + ".bias")
        return y if b is None else y + b

    def rope(self, x, positions):
        """x [B, T, heads, hd]; positions [B, T] (long)."""
        cos = self.cos[positions][:, :, None, :]
        sin = self.sin[positions][:, :, None, :]
        half = x.shape[-1] // 2
        rot = self.torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rot * sin

    def qkv(self, h, p, positions):
        c = self.c
        B, T, _ = h.shape
        H, Hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        q = self.lin(h, f"{p}.self_attn.q_proj").view(B, T, H, hd)
        k = self.lin(h, f"{p}.self_attn.k_proj").view(B, T, Hkv, hd)
        v = self.lin(h, f"{p}.self_attn.v_proj").view(B, T, Hkv, hd)
        if has_qk_norm(c):
            q = self.rms(q, self.params[f"{p}.self_attn.q_norm.weight"])
            k = self.rms(k, self.params[f"{p}.self_attn.k_norm.weight"])
        return self.rope(q, positions), self.rope(k, positions), v

    def attend(self, q, k, v, mask):
        """q [B, Tq, H, hd]; k, v [B, Hkv, Tk, hd]; mask [Tq, Tk] bool (True = visible) or None."""
        torch = self.torch
        c = self.c
        B, Tq, H, hd = q.shape
        group = H // c["num_key_value_heads"]
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        scores = (q.transpose(1, 2) @ k.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, Tq, Tk]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        return (probs @ v).transpose(1, 2).reshape(B, Tq, H * hd)

    def block_rest(self, x, attn_out, p):
        x = x + self.lin(attn_out, f"{p}.self_attn.o_proj")
        h2 = self.rms(x, self.params[f"{p}.post_attention_layernorm.weight"])
        gate = self.lin(h2, f"{p}.mlp.gate_proj")
        up = self.lin(h2, f"{p}.mlp.up_proj")
        return x + self.lin(self.torch.nn.functional.silu(gate) * up, f"{p}.mlp.down_proj")

    def forward(self, ids, positions):
        """Training forward: logits [B, T, V] with causal attention."""
        T = ids.shape[1]
        causal = self.torch.ones(T, T, dtype=self.torch.bool, device=self.device).tril()
        x = self.params["model.embed_tokens.weight"][ids]
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            h = self.rms(x, self.params[f"{p}.input_layernorm.weight"])
            q, k, v = self.qkv(h, p, positions)
            a = self.attend(q, k.transpose(1, 2), v.transpose(1, 2), causal)
            x = self.block_rest(x, a, p)
        x = self.rms(x, self.params["model.norm.weight"])
        return x @ self.head().t()

    def forward_cached(self, ids, positions, cache, start):
        """ids [B, Tq] written at cache slots [start, start + Tq); returns the last position's logits."""
        torch = self.torch
        Tq = ids.shape[1]
        end = start + Tq
        mask = None
        if Tq > 1:
            mask = torch.ones(Tq, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        x = self.params["model.embed_tokens.weight"][ids]
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}"
            h = self.rms(x, self.params[f"{p}.input_layernorm.weight"])
            q, k, v = self.qkv(h, p, positions)
            kc, vc = cache[i]  # [B, Hkv, capacity, hd]
            kc[:, :, start:end] = k.transpose(1, 2)
            vc[:, :, start:end] = v.transpose(1, 2)
            a = self.attend(q, kc[:, :, :end], vc[:, :, :end], mask)
            x = self.block_rest(x, a, p)
        x = self.rms(x[:, -1], self.params["model.norm.weight"])
        return x @ self.head().t()


# ----------------------------------------------------------------------------------------------
# Benchmarks


def timed(torch, device, fn, warmup, repeats, max_seconds):
    for _ in range(warmup):
        fn()
    sync(torch, device)
    times = []
    start = time.perf_counter()
    while len(times) < repeats:
        t0 = time.perf_counter()
        fn()
        sync(torch, device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds:
            break
    return times


def make_train(torch, device, c, m, spec):
    """One learner step on a fixed random batch; returns (step, losses)."""
    B, T = spec["batch"], spec["seq"]
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, c["vocab_size"], (B, T), generator=g).to(device)
    positions = torch.arange(T, device=device)[None, :].expand(B, T)
    targets = torch.cat((ids[:, 1:], torch.full((B, 1), -100, dtype=torch.long, device=device)), dim=1)
    decay = [m.params[n] for n, _, _, d in m.specs if d]
    no_decay = [m.params[n] for n, _, _, d in m.specs if not d]
    opt_cfg = spec["optimizer"]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt_cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt_cfg["lr"],
        betas=(opt_cfg["beta1"], opt_cfg["beta2"]),
        eps=opt_cfg["eps"],
    )
    all_params = [m.params[n] for n, _, _, _ in m.specs]
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        logits = m.forward(ids, positions)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, c["vocab_size"]), targets.reshape(-1), ignore_index=-100
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(all_params, opt_cfg["max_grad_norm"])
        opt.step()
        losses.append(loss.item())

    return step, losses


def make_generate(torch, device, c, m, spec):
    """One greedy KV-cache generation of G sequences."""
    G, P, N = spec["gen_batch"], spec["prompt"], spec["new_tokens"]
    g = torch.Generator().manual_seed(11)
    prompt = torch.randint(0, c["vocab_size"], (G, P), generator=g).to(device)
    Hkv, hd = c["num_key_value_heads"], c["head_dim"]
    capacity = P + N

    @torch.no_grad()
    def generate():
        cache = [
            (torch.zeros(G, Hkv, capacity, hd, device=device), torch.zeros(G, Hkv, capacity, hd, device=device))
            for _ in range(c["num_hidden_layers"])
        ]
        positions = torch.arange(P, device=device)[None, :].expand(G, P)
        logits = m.forward_cached(prompt, positions, cache, 0)
        out = []
        for step in range(N):
            nxt = logits.argmax(-1)
            out.append(nxt.tolist())  # on the host, as a sampler with stop tokens needs it
            if step + 1 == N:
                break
            pos = torch.full((G, 1), P + step, dtype=torch.long, device=device)
            logits = m.forward_cached(nxt[:, None], pos, cache, P + step)
        return out

    return generate


def max_rss_mib():
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


def main():
    spec = json.loads(sys.stdin.readline())
    configure_threads(spec)
    import torch

    device = torch.device(spec.get("device", "cpu"))
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "env": {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("OPENBLAS", "OMP_", "MKL_"))},
    }
    if device.type == "cpu":
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
            info["threads"] = torch.get_num_threads()
        kind, detail = blas_info(torch)
        info["blas"] = kind
        info["blas_detail"] = detail
        if kind == "reference":
            log(f"torch_model.py: refusing to run: {REFERENCE_BLAS_HINT} (found {detail})")
            sys.exit(3)
        if kind == "unknown":
            log(f"torch_model.py: warning: {detail}; the baseline's BLAS is unverified")
    else:
        if not torch.cuda.is_available():
            log("torch_model.py: CUDA requested but torch.cuda.is_available() is false")
            sys.exit(4)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if hasattr(torch, "set_float32_matmul_precision"):
            torch.set_float32_matmul_precision("highest")
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    info["sgemm_1024_gflops"] = round(sgemm_gflops(torch, device), 1)
    log(f"torch_model.py: {json.dumps(info)}")
    print(json.dumps({"info": info}), flush=True)

    # one command per line; a case's model, optimizer state and data persist between its rounds
    cases = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        key = (cmd["model"], cmd["kind"])
        c = cmd["config"]
        if key not in cases:
            m = Model(torch, c, device)
            params = sum(p.numel() for p in m.params.values())
            if cmd["kind"] == "train":
                step, losses = make_train(torch, device, c, m, {**spec, **cmd})
                cases[key] = (step, losses, params)
            else:
                cases[key] = (make_generate(torch, device, c, m, {**spec, **cmd}), None, params)
        fn, losses, params = cases[key]
        max_seconds = float(cmd.get("max_seconds", float("inf")))
        times = timed(torch, device, fn, int(cmd.get("warmup", 0)), int(cmd["repeats"]), max_seconds)
        out = {"seconds": times, "params": params, "max_rss_mib": max_rss_mib()}
        if losses:
            out["loss"] = [losses[0], losses[-1]]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
