"""Loads an rmt checkpoint folder in PyTorch and lets it reason about the next token, as rmt does.

Usage:
  python3 examples/python/load_checkpoint.py <checkpoint dir> --text "12+35=" [--budget 16]
      [--max-new-tokens 64] [--json]

An rmt checkpoint is a Hugging Face folder (config.json, model.safetensors, tokenizer.json). With
`transformers` installed, `AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer` open it
directly; this script needs only PyTorch (Debian's python3-torch) and python3-regex, so it runs
where transformers is not installed. The model is the repository's float64 reference
(scripts/torch_ref/model.py), which follows the transformers modelling code for Llama, Qwen2 and
Qwen3, and the tokenizer below reads byte-level BPE tokenizer.json files (GPT-2, Qwen, Llama 3
style, and rmt's own).

The prompt is rmt's bare layout: the text, `<think>`, the stated budget (` budget {B}:`, the
default `prompt.budget_marker`), then greedy decoding until the end-of-text token. The reasoning is
what comes before `</think>`, the prediction what comes after it.
"""

import argparse
import json
import os
import sys

import regex
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "torch_ref"))

import model as ref  # noqa: E402
from safetensors_io import load_checkpoint_tensors  # noqa: E402

# The pre-tokenizer pattern of GPT-2's byte-level BPE (what ByteLevel with use_regex applies).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (the alphabet of byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


class ByteLevelBPE:
    """Encodes and decodes with a byte-level BPE tokenizer.json: added tokens first, then the
    pre-tokenizer's splits, then merges by rank."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        m = tj["model"]
        if m.get("type") != "BPE":
            raise ValueError(f"{path}: model.type {m.get('type')!r}: this example reads BPE tokenizers")
        self.vocab = m["vocab"]
        self.inverse = {i: t for t, i in self.vocab.items()}
        merges = [tuple(x.split(" ", 1)) if isinstance(x, str) else tuple(x) for x in m["merges"]]
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.added = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
        for content, i in self.added.items():
            self.inverse[i] = content
        self.byte_map = bytes_to_unicode()
        self.unbyte = {c: b for b, c in self.byte_map.items()}
        self.splits = self._splits(tj.get("pre_tokenizer"))
        self.added_re = (
            regex.compile("|".join(regex.escape(a) for a in sorted(self.added, key=len, reverse=True)))
            if self.added
            else None
        )

    def _splits(self, pre):
        """Regexes applied in order, each isolating its matches (Split 'Isolated' and ByteLevel)."""
        if pre is None:
            return []
        items = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
        out = []
        for p in items:
            if p["type"] == "Split":
                pattern = p["pattern"].get("Regex") or regex.escape(p["pattern"]["String"])
                if p.get("behavior") != "Isolated" or p.get("invert"):
                    raise ValueError(f"pre_tokenizer Split behavior {p.get('behavior')!r} is not read here")
                out.append(regex.compile(pattern))
            elif p["type"] == "ByteLevel":
                if p.get("add_prefix_space"):
                    raise ValueError("ByteLevel add_prefix_space is not read here")
                if p.get("use_regex", True):
                    out.append(regex.compile(GPT2_PATTERN))
            else:
                raise ValueError(f"pre_tokenizer type {p['type']!r} is not read here")
        return out

    def _pieces(self, text):
        pieces = [text]
        for rx in self.splits:
            nxt = []
            for piece in pieces:
                at = 0
                for mt in rx.finditer(piece):
                    if mt.start() > at:
                        nxt.append(piece[at : mt.start()])
                    if mt.end() > mt.start():
                        nxt.append(mt.group())
                    at = mt.end()
                if at < len(piece):
                    nxt.append(piece[at:])
            pieces = nxt
        return pieces

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            ranked = [(r, i) for r, i in ranked if r is not None]
            if not ranked:
                break
            _, i = min(ranked)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        chunks = []
        at = 0
        if self.added_re:
            for mt in self.added_re.finditer(text):
                chunks.append((text[at : mt.start()], False))
                chunks.append((mt.group(), True))
                at = mt.end()
        chunks.append((text[at:], False))
        for chunk, special in chunks:
            if special:
                ids.append(self.added[chunk])
                continue
            for piece in self._pieces(chunk):
                ids += self._bpe("".join(self.byte_map[b] for b in piece.encode("utf-8")))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.inverse[i]
            if tok in self.added:
                out += tok.encode("utf-8")
            else:
                out += bytes(self.unbyte[c] for c in tok)
        return out.decode("utf-8", errors="replace")


def load(folder):
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    c = ref.parse_config(raw, os.path.join(folder, "config.json"))
    tensors = load_checkpoint_tensors(folder)
    params = {}
    for name, shape, _, _ in ref.param_specs(c):
        if name not in tensors:
            raise SystemExit(f"{folder}: missing tensor {name}")
        if tuple(tensors[name].shape) != tuple(shape):
            raise SystemExit(f"{folder}: tensor {name} has shape {list(tensors[name].shape)}, expected {list(shape)}")
        params[name] = torch.tensor(tensors[name], dtype=torch.float64)
    return c, raw, params, ByteLevelBPE(os.path.join(folder, "tokenizer.json"))


def reason(c, raw, params, tok, text, budget, max_new_tokens, marker=" budget {B}:"):
    """Greedy next-token reasoning: returns prompt ids, generated ids, reasoning and prediction."""
    think, end_think = tok.added["<think>"], tok.added["</think>"]
    eos = raw.get("eos_token_id")
    stops = set(eos if isinstance(eos, list) else [eos]) - {None}
    prompt = tok.encode(text) + [think]
    if budget is not None:
        prompt += tok.encode(marker.replace("{B}", str(budget)))
    ids = list(prompt)
    generated = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = ref.forward(params, c, [ids])[0, -1]
            # Rows past the tokenizer's vocabulary are padding, never a token.
            logits[len(tok.inverse) :] = float("-inf")
            nxt = int(torch.argmax(logits))
            if nxt in stops:
                break
            generated.append(nxt)
            ids.append(nxt)
    close = generated.index(end_think) if end_think in generated else len(generated)
    return {
        "prompt_ids": prompt,
        "generated_ids": generated,
        "reasoning": tok.decode(generated[:close]),
        "prediction": tok.decode(generated[close + 1 :]) if close < len(generated) else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--text", required=True, help="the context whose next token the model reasons about")
    ap.add_argument("--budget", type=int, default=None, help="reasoning budget stated in the prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="print ids and texts as JSON")
    a = ap.parse_args()
    if a.budget is not None and a.budget < 1:
        ap.error("--budget must be a positive integer")
    c, raw, params, tok = load(a.checkpoint)
    r = reason(c, raw, params, tok, a.text, a.budget, a.max_new_tokens)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"context:    {a.text!r}")
        print(f"reasoning:  {r['reasoning']!r}")
        print(f"prediction: {r['prediction']!r}" if r["prediction"] is not None else "prediction: (none)")


if __name__ == "__main__":
    main()
