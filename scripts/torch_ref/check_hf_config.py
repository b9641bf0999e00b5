"""Opens config.json files with Hugging Face transformers' own config classes and checks that the RoPE
parameters transformers ends up with are those scripts/torch_ref/rope.py (the reference rmt is tested
against) reads, that transformers logs no warning about them, and that they survive transformers' own
save/load. For the layouts rmt writes (toHfConfig) and the fixtures' hand-written ones.

Needs transformers >= 5 (configuration classes only; torch is not needed):
  python3 -m venv /tmp/tf && /tmp/tf/bin/pip install 'transformers>=5'
  /tmp/tf/bin/python scripts/torch_ref/check_hf_config.py <config.json>...
Exit status 1 if any file disagrees.
"""

import io
import json
import logging
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(paths):
    import transformers
    from transformers.utils import logging as tlog

    sys.modules.setdefault("torch", types.ModuleType("torch"))  # rope.standardize does not use torch
    import rope as reference

    log = io.StringIO()
    tlog.get_logger().addHandler(logging.StreamHandler(log))
    bad = 0
    for path in paths:
        raw = json.load(open(path))
        cls = transformers.CONFIG_MAPPING[raw["model_type"]]
        log.truncate(0)
        log.seek(0)
        cfg = cls.from_dict(dict(raw))
        theirs = {k: v for k, v in dict(cfg.rope_parameters).items() if k != "type"}
        c = dict(raw)
        c.setdefault("max_position_embeddings", cfg.max_position_embeddings)
        ours = {k: v for k, v in reference.standardize(c).items() if k != "type"}
        again = dict(cls.from_dict(cfg.to_dict()).rope_parameters)
        warnings = log.getvalue().strip()
        problems = []
        if ours != theirs:
            problems.append(f"reference reads {ours}")
        if again != dict(cfg.rope_parameters):
            problems.append(f"transformers' own round trip gives {again}")
        if warnings:
            problems.append(f"transformers warns: {warnings}")
        bad += bool(problems)
        print(f"{'BAD' if problems else 'ok '} {path}: {theirs} {'; '.join(problems)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
