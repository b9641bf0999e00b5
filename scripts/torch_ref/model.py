"""Float64 PyTorch reference of rmt's decoder (Llama / Qwen2 / Qwen3), its loss and its optimizer.

Forward only: autograd provides the gradients the TypeScript backward pass is compared against.
Parameter names and shapes follow shared/model/params.ts (Hugging Face names, [out, in] matrices).
Written for torch 1.13 (CPU); nothing here depends on transformers.
"""

import math

import torch

import rope as rope_ref

# ----------------------------------------------------------------------------------------------
# Configuration and parameter specs (mirrors shared/model/config.ts and shared/model/params.ts)


class ConfigError(ValueError):
    pass


REQUIRED_FIELDS = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]


def parse_config(raw, source="config.json"):
    """Validates a parsed HF config.json and fills transformers' defaults, like parseModelConfig."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    missing = [f for f in REQUIRED_FIELDS if raw.get(f) is None]
    if missing:
        raise ConfigError(f"{source}: missing required field(s): {', '.join(missing)}")
    if raw["model_type"] not in ("llama", "qwen2", "qwen3"):
        raise ConfigError(f"{source}: field \"model_type\": unsupported {raw['model_type']!r}; expected llama, qwen2 or qwen3")
    c = dict(raw)
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings"):
        v = c.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise ConfigError(f"{source}: field \"{field}\": expected a positive integer, got {v!r}")
    for field in ("rms_norm_eps", "rope_theta"):
        v = c.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ConfigError(f"{source}: field \"{field}\": expected a positive number, got {v!r}")
    for field in ("tie_word_embeddings", "attention_bias"):
        v = c.get(field)
        if v is not None and not isinstance(v, bool):
            raise ConfigError(f"{source}: field \"{field}\": expected a boolean, got {v!r}")
    if c.get("num_key_value_heads") is None:
        c["num_key_value_heads"] = c["num_attention_heads"]
    if c.get("head_dim") is None and c["model_type"] == "qwen3":
        c["head_dim"] = 128  # Qwen3Config's default, not hidden_size / num_attention_heads
    if c.get("max_position_embeddings") is None:
        c["max_position_embeddings"] = 2048 if c["model_type"] == "llama" else 32768
    if c.get("head_dim") is None:
        if c["hidden_size"] % c["num_attention_heads"] != 0:
            raise ConfigError(f"{source}: field \"head_dim\": missing and hidden_size is not divisible by num_attention_heads")
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    if c["num_attention_heads"] % c["num_key_value_heads"] != 0:
        raise ConfigError(f"{source}: field \"num_key_value_heads\": does not divide num_attention_heads")
    if c["head_dim"] % 2 != 0:
        raise ConfigError(f"{source}: field \"head_dim\": RoPE needs an even head_dim")
    for field, default in (("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", False),
                           ("attention_bias", False), ("max_position_embeddings", 2048)):
        if c.get(field) is None:
            c[field] = default
    try:
        c["rope"] = rope_ref.standardize(c, source)
    except rope_ref.RopeConfigError as e:
        raise ConfigError(str(e)) from e
    return c


def has_qk_norm(c):
    return c["model_type"] == "qwen3"


def has_qkv_bias(c):
    return c["model_type"] == "qwen2" or bool(c["attention_bias"])


def has_o_bias(c):
    # Llama and Qwen3 (whose attention subclasses Llama's) bias o_proj with attention_bias; Qwen2 never.
    return c["model_type"] != "qwen2" and bool(c["attention_bias"])


def param_specs(c):
    """List of (name, shape, kind, decay) in the order of params.ts. kind: 'matrix' | 'gain' | 'bias'."""
    D, hd, I = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    q_dim = c["num_attention_heads"] * hd
    kv_dim = c["num_key_value_heads"] * hd
    specs = [("model.embed_tokens.weight", (c["vocab_size"], D), "matrix", True)]

    def mat(n, o, i):
        specs.append((n, (o, i), "matrix", True))

    def gain(n, size):
        specs.append((n, (size,), "gain", False))

    def bias(n, size):
        specs.append((n, (size,), "bias", False))

    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        gain(f"{p}.input_layernorm.weight", D)
        mat(f"{p}.self_attn.q_proj.weight", q_dim, D)
        mat(f"{p}.self_attn.k_proj.weight", kv_dim, D)
        mat(f"{p}.self_attn.v_proj.weight", kv_dim, D)
        if has_qkv_bias(c):
            bias(f"{p}.self_attn.q_proj.bias", q_dim)
            bias(f"{p}.self_attn.k_proj.bias", kv_dim)
            bias(f"{p}.self_attn.v_proj.bias", kv_dim)
        if has_qk_norm(c):
            gain(f"{p}.self_attn.q_norm.weight", hd)
            gain(f"{p}.self_attn.k_norm.weight", hd)
        mat(f"{p}.self_attn.o_proj.weight", D, q_dim)
        if has_o_bias(c):
            bias(f"{p}.self_attn.o_proj.bias", D)
        gain(f"{p}.post_attention_layernorm.weight", D)
        mat(f"{p}.mlp.gate_proj.weight", I, D)
        mat(f"{p}.mlp.up_proj.weight", I, D)
        mat(f"{p}.mlp.down_proj.weight", D, I)
    gain("model.norm.weight", D)
    if not c["tie_word_embeddings"]:
        mat("lm_head.weight", c["vocab_size"], D)
    return specs


# ----------------------------------------------------------------------------------------------
# Forward pass


def rms_norm(x, weight, eps):
    """HF RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, over the last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(position_ids, c):
    """cos, sin of shape [B, T, head_dim] (HF layout: the half-size frequencies repeated twice), times
    the RoPE type's attention scaling. Dynamic NTK sees seq_len = max(position_ids) + 1."""
    inv_freq, scale = rope_ref.inv_freq_and_scale(c, int(position_ids.max()) + 1)
    freqs = position_ids.to(torch.float64)[..., None] * inv_freq  # [B, T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scale, emb.sin() * scale


def apply_rope(x, cos, sin):
    """x: [B, T, heads, hd]; cos/sin: [B, T, hd]."""
    return x * cos[:, :, None, :] + rotate_half(x) * sin[:, :, None, :]


def linear(x, params, name):
    y = x @ params[name + ".weight"].T
    b = params.get(name + ".bias")
    return y if b is None else y + b


def masked_softmax(scores, visible):
    """Softmax of scores over the last dim restricted to `visible` (bool, broadcastable). Rows with no
    visible entry give all-zero probabilities (not NaN)."""
    s = scores.masked_fill(~visible, float("-inf"))
    m = s.amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)  # exactly 0 where not visible
    denom = e.sum(dim=-1, keepdim=True)
    return e / torch.where(denom > 0, denom, torch.ones_like(denom))


def attention(h, params, p, c, cos, sin, visible):
    B, T, _ = h.shape
    H, Hkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]
    q = linear(h, params, f"{p}.self_attn.q_proj").view(B, T, H, hd)
    k = linear(h, params, f"{p}.self_attn.k_proj").view(B, T, Hkv, hd)
    v = linear(h, params, f"{p}.self_attn.v_proj").view(B, T, Hkv, hd)
    if has_qk_norm(c):
        q = rms_norm(q, params[f"{p}.self_attn.q_norm.weight"], eps)
        k = rms_norm(k, params[f"{p}.self_attn.k_norm.weight"], eps)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    # GQA: query head h reads kv head h // (H / Hkv).
    group = H // Hkv
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, H, Tq, Tk]
    probs = masked_softmax(scores, visible[:, None, :, :])
    out = (probs @ v).transpose(1, 2).reshape(B, T, H * hd)
    return linear(out, params, f"{p}.self_attn.o_proj")


def visibility(attention_mask):
    """visible[b, i, j] = (j <= i) and attention_mask[b, j] == 1."""
    B, T = attention_mask.shape
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal[None, :, :] & (attention_mask[:, None, :] == 1)


def forward(params, c, input_ids, attention_mask=None, position_ids=None):
    """Logits [B, T, V] in float64. params: dict name -> float64 tensor."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, T = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask = torch.as_tensor(attention_mask, dtype=torch.long)
    if position_ids is None:
        position_ids = default_position_ids(attention_mask)
    position_ids = torch.as_tensor(position_ids, dtype=torch.long)
    eps = c["rms_norm_eps"]
    cos, sin = rope_cos_sin(position_ids, c)
    visible = visibility(attention_mask)

    x = params["model.embed_tokens.weight"][input_ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        h = rms_norm(x, params[f"{p}.input_layernorm.weight"], eps)
        x = x + attention(h, params, p, c, cos, sin, visible)
        h2 = rms_norm(x, params[f"{p}.post_attention_layernorm.weight"], eps)
        gate = linear(h2, params, f"{p}.mlp.gate_proj")
        up = linear(h2, params, f"{p}.mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(gate) * up, params, f"{p}.mlp.down_proj")
    x = rms_norm(x, params["model.norm.weight"], eps)
    head = params["model.embed_tokens.weight"] if c["tie_word_embeddings"] else params["lm_head.weight"]
    return x @ head.T


def default_position_ids(attention_mask):
    """cumsum(mask) - 1, clipped at 0 (left padding gets position 0)."""
    m = torch.as_tensor(attention_mask, dtype=torch.long)
    return (m.cumsum(-1) - 1).clamp(min=0)


# ----------------------------------------------------------------------------------------------
# Loss


def weighted_nll(logits, labels, loss_weights):
    """sum over positions with label != -100 of loss_weights * (logsumexp(logits) - logits[label]).
    No further normalisation: callers pre-normalise the weights."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    w = torch.as_tensor(loss_weights, dtype=torch.float64)
    valid = labels != -100
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, safe[..., None])[..., 0]
    return (torch.where(valid, w * nll, torch.zeros_like(nll))).sum()


# ----------------------------------------------------------------------------------------------
# Optimizer: global-norm clipping + torch.optim.AdamW (two groups) + warmup/cosine schedule


def lr_at(s, steps, warmup, lr_max, lr_min):
    if s < warmup:
        return lr_max * (s + 1) / warmup
    progress = (s - warmup) / max(1, steps - warmup)
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * progress))


def train(params, c, batch, opt_cfg):
    """Runs opt_cfg['steps'] AdamW steps on the same batch. params: dict name -> float64 leaf tensors
    with requires_grad (updated in place). Returns dict with losses, grad_norms (pre-clip), lrs."""
    specs = param_specs(c)
    decay = [params[n] for n, _, _, d in specs if d]
    no_decay = [params[n] for n, _, _, d in specs if not d]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt_cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt_cfg["lr_max"], betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"], foreach=False,
    )
    all_params = [params[n] for n, _, _, _ in specs]
    losses, grad_norms, lrs = [], [], []
    S = opt_cfg["steps"]
    for s in range(S):
        opt.zero_grad(set_to_none=True)
        logits = forward(params, c, batch["input_ids"], batch["attention_mask"], batch["position_ids"])
        loss = weighted_nll(logits, batch["labels"], batch["loss_weights"])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(all_params, opt_cfg["max_grad_norm"])
        lr = lr_at(s, S, opt_cfg["warmup"], opt_cfg["lr_max"], opt_cfg["lr_min"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(loss.item())
        grad_norms.append(norm.item())
        lrs.append(lr)
    return {"losses": losses, "grad_norms": grad_norms, "lrs": lrs}
