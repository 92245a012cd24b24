"""Write the overfitted image codec's shipped entropy tables (run once; the output is committed).

    python scripts/export_overfit_tables.py  ->  codecs/weights/overfit-laplace-v1.safetensors

Tables are computed in float64 here and stored as integers, so every machine decodes with the same ones.
"""

from pathlib import Path

from safetensors.torch import save_file

from polycodec.codecs.overfit import TABLES, build_tables

if __name__ == "__main__":
    state = {k: v.contiguous() for k, v in build_tables().state_dict().items()}
    Path(TABLES).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(TABLES), metadata={"codec": "image-overfit", "version": "1", "family": "laplace mean-scale"})
    print(f"wrote {TABLES} ({Path(TABLES).stat().st_size} bytes)")
