"""RoPE of a Hugging Face config.json, in float64, following transformers' own code path.

transformers 5 (configuration_utils / modeling_rope_utils.RotaryEmbeddingConfigMixin) reads either
layout: `rope_scaling` (4.x; when non-empty it replaces `rope_parameters`) or `rope_parameters` (5.x),
with `rope_theta` set by default from the top-level field (default 10000), `rope_type` from the dict's
`rope_type`, else its legacy `type`, else "default", and for llama3/yarn/longrope
`original_max_position_embeddings` from the top level if present, else the dict, else
max_position_embeddings. The inverse frequencies follow the ROPE_INIT_FUNCTIONS of each type; the
attention scaling multiplies cos and sin (LlamaRotaryEmbedding.forward). Dynamic NTK recomputes the
frequencies for seq_len = max(position_ids) + 1 when that exceeds max_position_embeddings.

Written from reading transformers; it does not import it (torch 1.13 here, transformers 5 needs more).
"""

import math

import torch

SUPPORTED = ("default", "linear", "dynamic", "yarn", "llama3")


class RopeConfigError(ValueError):
    pass


def standardize(raw, source="config.json"):
    """The rope parameter dict transformers ends up with, for a parsed config.json `raw`."""
    scaling = raw.get("rope_scaling")
    params = raw.get("rope_parameters")
    d = dict(scaling or params or {})
    d.setdefault("rope_theta", raw.get("rope_theta", 10000.0))
    if d["rope_theta"] is None:
        d["rope_theta"] = 10000.0
    d.setdefault("rope_type", d.get("type", "default"))
    if d["rope_type"] not in SUPPORTED:
        raise RopeConfigError(f"{source}: rope_type {d['rope_type']!r} is not implemented")
    if d["rope_type"] in ("llama3", "yarn"):
        if raw.get("original_max_position_embeddings") is not None:
            d["original_max_position_embeddings"] = raw["original_max_position_embeddings"]
        else:
            d.setdefault("original_max_position_embeddings", raw["max_position_embeddings"])
    return d


def _base_inv_freq(dim, base):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def _yarn(d, dim, max_position_embeddings):
    base = d["rope_theta"]
    orig = d["original_max_position_embeddings"]
    factor = d.get("factor")
    if factor is None:
        factor = max_position_embeddings / orig
    attention_factor = d.get("attention_factor")
    mscale, mscale_all_dim = d.get("mscale"), d.get("mscale_all_dim")

    def get_mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = d.get("beta_fast") or 32
    beta_slow = d.get("beta_slow") or 1

    def correction_dim(rotations):
        return (dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if d.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation_factor = 1 - ramp
    inv = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv, attention_factor


def _llama3(d, dim):
    inv = _base_inv_freq(dim, d["rope_theta"])
    factor, low_ff, high_ff = d["factor"], d["low_freq_factor"], d["high_freq_factor"]
    old = d["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low_ff, old / high_ff
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low_ff) / (high_ff - low_ff)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled), 1.0


def inv_freq_and_scale(c, seq_len):
    """(inv_freq [head_dim/2] float64, attention scaling) for a forward over seq_len positions."""
    d, dim = c["rope"], c["head_dim"]
    kind = d["rope_type"]
    if kind == "default":
        return _base_inv_freq(dim, d["rope_theta"]), 1.0
    if kind == "linear":
        return _base_inv_freq(dim, d["rope_theta"]) / d["factor"], 1.0
    if kind == "dynamic":
        mpe = c["max_position_embeddings"]
        seq_len = max(seq_len, mpe)
        base = d["rope_theta"] * ((d["factor"] * seq_len / mpe) - (d["factor"] - 1)) ** (dim / (dim - 2))
        return _base_inv_freq(dim, base), 1.0
    if kind == "yarn":
        return _yarn(d, dim, c["max_position_embeddings"])
    return _llama3(d, dim)
