"""Writes the RoPE fixtures under test/fixtures/torch-ref-rope/<name>/: one small checkpoint per RoPE
type and config.json layout, with float64 logits, loss and gradients from the reference.

Run from anywhere:  /usr/bin/python3 scripts/torch_ref/make_rope_fixtures.py
Deterministic. Each fixture is cross-checked against the loop formulation of make_fixtures.py and by
finite differences on the query/key projections (the parameters RoPE acts through); exit 1 on failure.

The transformers 5 configs follow what Qwen3Config / LlamaConfig serialise (rope_parameters holding
rope_theta and rope_type, layer_types, sliding_window null when use_sliding_window is false); the 4.x
ones keep rope_theta at the top level and the variant in rope_scaling, with `type` in the oldest form.
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_fixtures as mf  # noqa: E402
import model as ref  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402

OUT_DIR = os.path.join(mf.ROOT, "test", "fixtures", "torch-ref-rope")

DIMS = {
    "vocab_size": 37,
    "hidden_size": 16,
    "intermediate_size": 24,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}


def qwen3_v5(rope_parameters, max_position_embeddings):
    """A Qwen3 config.json as transformers 5 writes it."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": None,
        "dtype": "float32",
        "eos_token_id": None,
        **DIMS,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "layer_types": ["full_attention"] * DIMS["num_hidden_layers"],
        "max_position_embeddings": max_position_embeddings,
        "max_window_layers": 28,
        "model_type": "qwen3",
        "pad_token_id": None,
        "rope_parameters": rope_parameters,
        "sliding_window": None,
        "transformers_version": "5.18.0",
        "use_cache": True,
        "use_sliding_window": False,
    }


def v4(model_type, rope_theta, rope_scaling, max_position_embeddings, **extra):
    """A config.json in the transformers 4.x layout (top-level rope_theta, rope_scaling)."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]
    return {
        "architectures": [arch],
        "model_type": model_type,
        **DIMS,
        "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings,
        "rope_theta": rope_theta,
        "rope_scaling": rope_scaling,
        "torch_dtype": "float32",
        "transformers_version": "4.51.0",
        **extra,
    }


# (name, seed, config.json, position offset: added to every position so long-range frequencies matter)
FIXTURES = [
    ("qwen3-v5-default", 11, qwen3_v5({"rope_theta": 1000000.0, "rope_type": "default"}, 40960), 1000),
    (
        "qwen3-v5-yarn",
        12,
        qwen3_v5(
            {"rope_theta": 1000000.0, "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
            131072,
        ),
        40000,
    ),
    (
        "qwen3-v5-yarn-mscale",
        13,
        qwen3_v5(
            {
                "rope_theta": 10000.0,
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 2048,
                "mscale": 1.5,
                "mscale_all_dim": 0.5,
                "beta_fast": 16,
                "beta_slow": 2,
                "truncate": False,
            },
            8192,
        ),
        5000,
    ),
    (
        "llama-v4-llama3",
        14,
        v4(
            "llama",
            500000.0,
            {
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            131072,
            attention_bias=False,
            mlp_bias=False,
        ),
        20000,
    ),
    ("qwen2-v4-linear-type", 15, v4("qwen2", 10000.0, {"type": "linear", "factor": 4.0}, 8192), 3000),
    ("llama-v4-dynamic", 16, v4("llama", 10000.0, {"rope_type": "dynamic", "factor": 2.0}, 512), 1000),
]


def build(name, seed, raw, offset):
    c = ref.parse_config(raw)
    folder = os.path.join(OUT_DIR, name)
    os.makedirs(folder, exist_ok=True)
    failures = []

    def check(label, err, tol):
        ok = err <= tol
        print(f"  [{'ok' if ok else 'FAIL'}] {label}: {err:.3e} (tol {tol:.0e})")
        if not ok:
            failures.append(label)

    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
        f.write("\n")
    save_file(mf.init_params_f32(c, seed), os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    p32 = load_file(os.path.join(folder, "model.safetensors"))
    inp = mf.make_inputs(c, seed)
    del inp["optimizer"]
    inp["position_ids"] = [[p + offset for p in row] for row in inp["position_ids"]]
    with open(os.path.join(folder, "inputs.json"), "w") as f:
        json.dump(inp, f)
        f.write("\n")
    ids, mask, pos = inp["input_ids"], inp["attention_mask"], inp["position_ids"]
    labels, weights = inp["labels"], inp["loss_weights"]

    params = mf.to_f64_params(p32)
    logits = ref.forward(params, c, ids, mask, pos)
    loss = ref.weighted_nll(logits, labels, weights)
    loss.backward()
    grads = {n: t.grad.detach().clone() for n, t in params.items()}
    seq_len = max(max(row) for row in pos) + 1
    inv_freq, scale = ref.rope_ref.inv_freq_and_scale(c, seq_len)
    print(f"{name}: {c['rope']}, seq_len {seq_len}, attention scaling {scale:.6f}, loss {loss.item():.12f}")

    nparams = mf.to_f64_params(p32)
    nlogits = mf.forward_naive(nparams, c, ids, mask, pos)
    nloss = mf.loss_naive(nlogits, labels, weights)
    nloss.backward()
    check("logits vs loop formulation (max abs)", (nlogits - logits).abs().max().item(), 1e-12)
    check("grads vs loop formulation (max abs)", max((nparams[n].grad - grads[n]).abs().max().item() for n in grads), 1e-12)

    base = {n: t.detach().clone() for n, t in params.items()}
    h, max_abs = 1e-6, 0.0
    for n in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
        flat = base[n].view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 5)):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + h
                lp = ref.weighted_nll(ref.forward(base, c, ids, mask, pos), labels, weights).item()
                flat[i] = old - h
                lm = ref.weighted_nll(ref.forward(base, c, ids, mask, pos), labels, weights).item()
                flat[i] = old
            max_abs = max(max_abs, abs((lp - lm) / (2 * h) - grads[n].view(-1)[i].item()))
    check("finite differences on q/k projections (max abs)", max_abs, 1e-7)

    out = {"logits": logits.detach().numpy(), "rope.inv_freq": inv_freq.numpy()}
    for n in grads:
        out[f"grad.{n}"] = grads[n].numpy()
    save_file(out, os.path.join(folder, "outputs.safetensors"))
    with open(os.path.join(folder, "outputs.json"), "w") as f:
        json.dump({"loss": loss.item(), "seq_len": seq_len, "attention_scaling": scale}, f, indent=1)
        f.write("\n")
    return failures


def main():
    torch.set_default_dtype(torch.float64)
    failures = []
    for name, seed, raw, offset in FIXTURES:
        failures += [f"{name}: {x}" for x in build(name, seed, raw, offset)]
    if failures:
        print("FAILED checks:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"all checks passed; fixtures in {os.path.relpath(OUT_DIR, mf.ROOT)}")


if __name__ == "__main__":
    main()
