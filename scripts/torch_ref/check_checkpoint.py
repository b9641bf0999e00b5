"""Loads an rmt (or Hugging Face) checkpoint folder with the reference model and writes its logits.

Usage:  /usr/bin/python3 scripts/torch_ref/check_checkpoint.py <checkpoint dir> <inputs.json> <out.json>

<checkpoint dir>  config.json + model.safetensors, or config.json + model.safetensors.index.json and
                  the shards it lists. Any of F32 / F64 / F16 / BF16 weights; computed in float64.
<inputs.json>     {"input_ids": [[...]], "attention_mask": [[...]] (optional, default all ones),
                   "position_ids": [[...]] (optional, default cumsum(mask) - 1 clipped at 0)}
<out.json>        {"shape": [B, T, V], "dtype": "float64", "model_type": ..., "logits": [[[...]]]}

Exit status: 0 ok; 2 config.json missing, unreadable, or missing/invalid fields; 3 a parameter tensor
missing or of the wrong shape; 1 anything else (bad arguments, bad inputs).
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import model as ref  # noqa: E402
from safetensors_io import load_checkpoint_tensors  # noqa: E402


def fail(code, msg):
    print(f"check_checkpoint: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(1)
    folder, inputs_path, out_path = argv
    cfg_path = os.path.join(folder, "config.json")
    try:
        with open(cfg_path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        fail(2, f"cannot read {cfg_path}: {e}")
    try:
        c = ref.parse_config(raw, cfg_path)
    except ref.ConfigError as e:
        fail(2, str(e))

    try:
        tensors = load_checkpoint_tensors(folder)
    except (OSError, ValueError) as e:
        fail(3, str(e))
    params = {}
    problems = []
    for name, shape, _, _ in ref.param_specs(c):
        t = tensors.get(name)
        if t is None:
            problems.append(f"missing tensor {name} (expected shape {list(shape)})")
        elif tuple(t.shape) != tuple(shape):
            problems.append(f"tensor {name} has shape {list(t.shape)}, expected {list(shape)}")
        else:
            params[name] = torch.tensor(t, dtype=torch.float64)
    if problems:
        fail(3, f"{folder}: " + "; ".join(problems))
    extra = sorted(set(tensors) - set(params))
    if extra:
        print(f"check_checkpoint: note: ignoring {len(extra)} extra tensor(s): {', '.join(extra[:5])}", file=sys.stderr)

    with open(inputs_path) as f:
        inp = json.load(f)
    ids = torch.tensor(inp["input_ids"], dtype=torch.long)
    if ids.dim() != 2:
        fail(1, "input_ids must be a [B, T] list of lists")
    if int(ids.min()) < 0 or int(ids.max()) >= c["vocab_size"]:
        fail(1, f"input_ids out of range for vocab_size {c['vocab_size']}")
    mask = inp.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else torch.tensor(mask, dtype=torch.long)
    pos = inp.get("position_ids")
    pos = ref.default_position_ids(mask) if pos is None else torch.tensor(pos, dtype=torch.long)

    with torch.no_grad():
        logits = ref.forward(params, c, ids, mask, pos)
    out = {"shape": list(logits.shape), "dtype": "float64", "model_type": c["model_type"], "logits": logits.tolist()}
    with open(out_path, "w") as f:
        json.dump(out, f)
    print(f"check_checkpoint: {c['model_type']} from {folder}: logits {list(logits.shape)} -> {out_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
