"""Write the tensor codec's shipped entropy tables (run once; the output is committed).

    python scripts/export_tensor_tables.py  ->  codecs/weights/tensor-laplace-v1.safetensors

Tables are computed in float64 here and stored as integers, so every machine decodes with the same ones.
"""

from pathlib import Path

from safetensors.torch import save_file

from polycodec.codecs.tensor import WEIGHTS, build_tables

if __name__ == "__main__":
    state = {k: v.contiguous() for k, v in build_tables().state_dict().items()}
    Path(WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(WEIGHTS), metadata={"codec": "tensor", "version": "1", "family": "laplace"})
    print(f"wrote {WEIGHTS} ({Path(WEIGHTS).stat().st_size} bytes)")
