"""Writes the float64 PyTorch reference fixtures under test/fixtures/torch-ref/<name>/.

Run from anywhere:  /usr/bin/python3 scripts/torch_ref/make_fixtures.py
Deterministic: fixed seeds, CPU only. Also cross-checks the reference against an independent loop-based
formulation, finite differences and a hand-written AdamW, and fails (exit 1) if any check is off.
"""

import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import model as ref  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "torch-ref")

B, T = 3, 9
OPTIMIZER = {
    "lr_max": 1e-2,
    "lr_min": 1e-3,
    "warmup": 3,
    "steps": 10,
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.1,
    "max_grad_norm": 1.0,
}

FIXTURES = [
    (
        "qwen3-gqa",
        1234,
        {
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "vocab_size": 97,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "max_position_embeddings": 64,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        },
    ),
    (
        "qwen2-tied",
        5678,
        {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": 89,
            "hidden_size": 24,
            "intermediate_size": 40,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500.0,
            "tie_word_embeddings": True,
            "attention_bias": False,
            "max_position_embeddings": 64,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        },
    ),
]


# ----------------------------------------------------------------------------------------------
# Data


def init_params_f32(c, seed):
    """float32 initial weights: matrices normal(0, 0.1), gains 1 + 0.1 normal, biases 0.1 normal."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape, kind, _ in ref.param_specs(c):
        z = torch.randn(shape, generator=g, dtype=torch.float32)
        if kind == "matrix":
            t = 0.1 * z
        elif kind == "gain":
            t = 1.0 + 0.1 * z
        else:
            t = 0.1 * z
        out[name] = t.numpy().astype(np.float32)
    return out


def make_inputs(c, seed):
    g = torch.Generator().manual_seed(seed + 1)
    V = c["vocab_size"]
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 3 :] = 0  # right-padded by 3
    mask[2, :2] = 0  # left-padded by 2
    ids = torch.where(mask == 1, ids, torch.zeros_like(ids))  # pad token id 0
    pos = ref.default_position_ids(mask)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b in range(B):
        for t in range(T - 1):
            if mask[b, t] == 1 and mask[b, t + 1] == 1:
                labels[b, t] = ids[b, t + 1]
    n_lab = int((labels != -100).sum())
    w = 0.5 + torch.rand(B, T, generator=g, dtype=torch.float64)
    w = torch.where(labels != -100, w / n_lab, torch.zeros_like(w))
    return {
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "position_ids": pos.tolist(),
        "labels": labels.tolist(),
        "loss_weights": w.tolist(),
        "optimizer": OPTIMIZER,
    }


def to_f64_params(p32, requires_grad=True):
    return {n: torch.tensor(a, dtype=torch.float64).requires_grad_(requires_grad) for n, a in p32.items()}


# ----------------------------------------------------------------------------------------------
# Independent checks


def forward_naive(params, c, ids, mask, pos):
    """Loop-based formulation: RoPE as a rotation of the pairs (i, i + hd/2) by explicit angles, GQA by
    head index, softmax over an explicit list of visible keys, nll via log_softmax."""
    H, Hkv, hd, eps = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["rms_norm_eps"]
    half = hd // 2
    group = H // Hkv
    Bn, Tn = len(ids), len(ids[0])

    def norm(x, w):
        return x / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps) * w

    def lin(x, name):
        y = x @ params[name + ".weight"].T
        return y + params[name + ".bias"] if name + ".bias" in params else y

    def rope(vec, p):  # vec [hd], p int
        out = []
        for i in range(half):
            ang = p * theta_pow[i]
            a, b = vec[i], vec[i + half]
            cs, sn = scale * math.cos(ang), scale * math.sin(ang)
            out.append((a * cs - b * sn, a * sn + b * cs))
        return torch.stack([o[0] for o in out] + [o[1] for o in out])

    inv_freq, scale = ref.rope_ref.inv_freq_and_scale(c, max(max(row) for row in pos) + 1)
    theta_pow = inv_freq.tolist()
    logits = []
    for b in range(Bn):
        x = torch.stack([params["model.embed_tokens.weight"][ids[b][t]] for t in range(Tn)])
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}"
            h = norm(x, params[f"{p}.input_layernorm.weight"])
            q = lin(h, f"{p}.self_attn.q_proj")
            k = lin(h, f"{p}.self_attn.k_proj")
            v = lin(h, f"{p}.self_attn.v_proj")
            heads_out = []
            for t in range(Tn):
                row = []
                for hh in range(H):
                    kvh = hh // group
                    qv = q[t, hh * hd : (hh + 1) * hd]
                    if ref.has_qk_norm(c):
                        qv = norm(qv, params[f"{p}.self_attn.q_norm.weight"])
                    qv = rope(qv, pos[b][t])
                    keys, vals = [], []
                    for j in range(t + 1):
                        if mask[b][j] != 1:
                            continue
                        kv = k[j, kvh * hd : (kvh + 1) * hd]
                        if ref.has_qk_norm(c):
                            kv = norm(kv, params[f"{p}.self_attn.k_norm.weight"])
                        keys.append(rope(kv, pos[b][j]))
                        vals.append(v[j, kvh * hd : (kvh + 1) * hd])
                    if not keys:
                        row.append(torch.zeros(hd, dtype=torch.float64))
                        continue
                    s = torch.stack([(qv * kk).sum() for kk in keys]) / math.sqrt(hd)
                    pr = torch.softmax(s, dim=0)
                    row.append((pr[:, None] * torch.stack(vals)).sum(0))
                heads_out.append(torch.cat(row))
            x = x + lin(torch.stack(heads_out), f"{p}.self_attn.o_proj")
            h2 = norm(x, params[f"{p}.post_attention_layernorm.weight"])
            gate = lin(h2, f"{p}.mlp.gate_proj")
            x = x + lin(gate / (1 + torch.exp(-gate)) * lin(h2, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
        x = norm(x, params["model.norm.weight"])
        head = params["model.embed_tokens.weight"] if c["tie_word_embeddings"] else params["lm_head.weight"]
        logits.append(x @ head.T)
    return torch.stack(logits)


def loss_naive(logits, labels, weights):
    total = torch.zeros((), dtype=torch.float64)
    lsm = torch.log_softmax(logits, dim=-1)
    for b in range(len(labels)):
        for t in range(len(labels[0])):
            if labels[b][t] != -100:
                total = total - weights[b][t] * lsm[b, t, labels[b][t]]
    return total


def adamw_by_hand(p32, c, inp, grads_fn):
    """Clipping + AdamW + schedule written out, without torch.optim / clip_grad_norm_."""
    o = OPTIMIZER
    b1, b2 = o["betas"]
    specs = ref.param_specs(c)
    theta = {n: torch.tensor(a, dtype=torch.float64) for n, a in p32.items()}
    m = {n: torch.zeros_like(t) for n, t in theta.items()}
    v = {n: torch.zeros_like(t) for n, t in theta.items()}
    losses, norms = [], []
    for s in range(o["steps"]):
        loss, grads = grads_fn(theta)
        losses.append(loss)
        total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        norms.append(total)
        coef = o["max_grad_norm"] / (total + 1e-6)
        if coef < 1:
            grads = {n: g * coef for n, g in grads.items()}
        lr = ref.lr_at(s, o["steps"], o["warmup"], o["lr_max"], o["lr_min"])
        step = s + 1
        for n, _, _, decay in specs:
            g = grads[n]
            wd = o["weight_decay"] if decay else 0.0
            theta[n] = theta[n] * (1 - lr * wd)
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            mhat = m[n] / (1 - b1**step)
            denom = torch.sqrt(v[n]) / math.sqrt(1 - b2**step) + o["eps"]
            theta[n] = theta[n] - lr * mhat / denom
    return theta, losses, norms


# ----------------------------------------------------------------------------------------------


def build(name, seed, cfg_raw):
    c = ref.parse_config(cfg_raw)
    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    failures = []

    def check(label, err, tol):
        ok = err <= tol
        print(f"  [{'ok' if ok else 'FAIL'}] {label}: {err:.3e} (tol {tol:.0e})")
        if not ok:
            failures.append(label)

    p32 = init_params_f32(c, seed)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg_raw, f, indent=2)
        f.write("\n")
    save_file(p32, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    # Use exactly what was written (float32 values promoted to float64).
    p32 = load_file(os.path.join(folder, "model.safetensors"))
    inp = make_inputs(c, seed)
    with open(os.path.join(folder, "inputs.json"), "w") as f:
        json.dump(inp, f)
        f.write("\n")
    ids, mask, pos = inp["input_ids"], inp["attention_mask"], inp["position_ids"]
    labels, weights = inp["labels"], inp["loss_weights"]

    # Reference forward, loss, gradients at the initial weights.
    params = to_f64_params(p32)
    logits = ref.forward(params, c, ids, mask, pos)
    loss = ref.weighted_nll(logits, labels, weights)
    loss.backward()
    grads = {n: t.grad.detach().clone() for n, t in params.items()}
    print(f"{name}: loss {loss.item():.12f}, logits std {logits.std().item():.3f}")
    if not torch.isfinite(logits).all():
        failures.append("non-finite logits")

    # 1. Independent loop-based forward + loss + autograd.
    nparams = to_f64_params(p32)
    nlogits = forward_naive(nparams, c, ids, mask, pos)
    nloss = loss_naive(nlogits, labels, weights)
    nloss.backward()
    check("logits vs loop formulation (max abs)", (nlogits - logits).abs().max().item(), 1e-12)
    check("loss vs loop formulation (abs)", abs(nloss.item() - loss.item()), 1e-13)
    check("grads vs loop formulation (max abs)", max((nparams[n].grad - grads[n]).abs().max().item() for n in grads), 1e-12)

    # 2. Padding invariances: sequence 2 (left-padded by 2) equals its 7 valid tokens run alone, and pad
    #    token ids do not change any valid position.
    solo = ref.forward(params, c, [ids[2][2:]], None, None).detach()
    check("left-padded row vs unpadded run (max abs)", (solo[0] - logits[2, 2:].detach()).abs().max().item(), 1e-12)
    ids2 = [row[:] for row in ids]
    for b in range(B):
        for t in range(T):
            if mask[b][t] == 0:
                ids2[b][t] = (ids2[b][t] + 7) % c["vocab_size"]
    lg2 = ref.forward(params, c, ids2, mask, pos).detach()
    valid = torch.tensor(mask, dtype=torch.bool)
    check("pad ids leak into valid logits (max abs)", (lg2 - logits.detach())[valid].abs().max().item(), 0.0)

    # 3. Central finite differences in float64 on a few entries of several parameters.
    def loss_at(pdict):
        with torch.no_grad():
            return ref.weighted_nll(ref.forward(pdict, c, ids, mask, pos), labels, weights).item()

    g = torch.Generator().manual_seed(seed + 2)
    fd_names = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.1.self_attn.v_proj.weight",
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.norm.weight",
    ]
    fd_names += [n for n in grads if "q_norm" in n or "k_norm" in n or n.endswith(".bias")][:4]
    if "lm_head.weight" in grads:
        fd_names.append("lm_head.weight")
    base = {n: t.detach().clone() for n, t in params.items()}
    h = 1e-6
    max_abs = max_rel = 0.0
    n_fd = 0
    for n in fd_names:
        flat = base[n].view(-1)
        idx = torch.randperm(flat.numel(), generator=g)[:4].tolist()
        if n == "model.embed_tokens.weight":
            # make sure an embedding row of a real input token is probed
            idx[0] = ids[0][0] * c["hidden_size"]
        for i in idx:
            old = flat[i].item()
            flat[i] = old + h
            lp = loss_at(base)
            flat[i] = old - h
            lm = loss_at(base)
            flat[i] = old
            fd = (lp - lm) / (2 * h)
            an = grads[n].view(-1)[i].item()
            err = abs(fd - an)
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, err / max(abs(an), 1e-6))
            n_fd += 1
    print(f"  finite differences: {n_fd} entries over {len(fd_names)} params, h={h}")
    check("finite-difference grad max abs error", max_abs, 1e-7)
    check("finite-difference grad max rel error (|g|>=1e-6 floor)", max_rel, 1e-5)

    # 4. Training with torch.optim.AdamW + clip_grad_norm_.
    tparams = to_f64_params(p32)
    batch = {k: inp[k] for k in ("input_ids", "attention_mask", "position_ids", "labels", "loss_weights")}
    hist = ref.train(tparams, c, batch, OPTIMIZER)
    with torch.no_grad():
        loss_after = ref.weighted_nll(ref.forward(tparams, c, ids, mask, pos), labels, weights).item()
    print(f"  losses: {' '.join(f'{x:.5f}' for x in hist['losses'])} -> {loss_after:.5f}")
    print(f"  grad norms: {' '.join(f'{x:.4f}' for x in hist['grad_norms'])}")

    # 5. The same run with clipping/AdamW/schedule written out by hand.
    def grads_fn(theta):
        pd = {n: t.clone().requires_grad_(True) for n, t in theta.items()}
        lo = ref.weighted_nll(ref.forward(pd, c, ids, mask, pos), labels, weights)
        lo.backward()
        return lo.item(), {n: t.grad for n, t in pd.items()}

    htheta, hlosses, hnorms = adamw_by_hand(p32, c, inp, grads_fn)
    check("AdamW by hand vs torch.optim (params max abs)", max((htheta[n] - tparams[n].detach()).abs().max().item() for n in htheta), 1e-13)
    check("AdamW by hand vs torch.optim (losses max abs)", max(abs(a - b) for a, b in zip(hlosses, hist["losses"])), 1e-13)
    check("AdamW by hand vs torch.optim (norms max abs)", max(abs(a - b) for a, b in zip(hnorms, hist["grad_norms"])), 1e-12)
    if abs(hist["losses"][0] - loss.item()) > 0:
        failures.append("losses[0] != loss")

    out = {"logits": logits.detach().numpy()}
    for n in grads:
        out[f"grad.{n}"] = grads[n].numpy()
        out[f"after_steps.{n}"] = tparams[n].detach().numpy()
    save_file(out, os.path.join(folder, "outputs.safetensors"))
    with open(os.path.join(folder, "outputs.json"), "w") as f:
        json.dump(
            {
                "loss": loss.item(),
                "losses": hist["losses"],
                "grad_norms": hist["grad_norms"],
                "lrs": hist["lrs"],
                "loss_after_steps": loss_after,
                "param_names": [n for n, _, _, _ in ref.param_specs(c)],
            },
            f,
            indent=1,
        )
        f.write("\n")
    return failures


def main():
    torch.set_default_dtype(torch.float64)
    failures = []
    for name, seed, cfg in FIXTURES:
        failures += [f"{name}: {x}" for x in build(name, seed, cfg)]
    if failures:
        print("FAILED checks:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"all checks passed; fixtures in {os.path.relpath(OUT_DIR, ROOT)}")


if __name__ == "__main__":
    main()
