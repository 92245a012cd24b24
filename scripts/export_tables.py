"""Write the entropy tables the table-only codecs ship (run once; the outputs are committed).

    python scripts/export_tables.py  ->  codecs/weights/tensor-laplace-v1.safetensors   (tensor codec)
                                         codecs/weights/overfit-laplace-v1.safetensors  (image-overfit codec)

Tables are computed in float64 here and stored as integers, so every machine decodes with the same ones.
A file whose tables are unchanged is left alone: streams name their tables by the file's SHA-256, and
safetensors does not keep its metadata in a fixed order, so rewriting equal tables could change the hash.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from polycodec.codecs import overfit, tensor

if __name__ == "__main__":
    for module, codec, family in ((tensor, "tensor", "laplace"), (overfit, "image-overfit", "laplace mean-scale")):
        path = Path(getattr(module, "WEIGHTS", None) or module.TABLES)
        state = {k: v.contiguous() for k, v in module.build_tables().state_dict().items()}
        if path.exists() and (old := load_file(str(path))).keys() == state.keys() and all(
                torch.equal(old[k], state[k]) for k in state):
            print(f"{path}: tables unchanged, kept")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path), metadata={"codec": codec, "version": "1", "family": family})
        print(f"wrote {path} ({path.stat().st_size} bytes)")
