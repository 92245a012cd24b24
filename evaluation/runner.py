"""Run every codec at every setting of its sweep over every file of a folder, in parallel, resumably."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..bitstream import Modality
from ..codecs import StreamCodec, available_codecs, codec_entry
from ..media import modality_of
from .store import ResultStore
from .measure import measure

RESULTS_FILE = "results.jsonl"
OPTIONS_FILE = "options.json"


@dataclass
class EvalConfig:
    data_dir: Path
    out_dir: Path
    codecs: list[str]
    modality: Modality | None = None
    anchor: str | None = None  # BD-rates are computed against this codec (default: the first classical one)
    workers: int = 1
    perception: bool = True
    speech: bool = False  # audio: compute speech metrics (PESQ-WB, STOI, ASR agreement)
    vmaf: bool = True
    max_files: int | None = None
    max_frames: int | None = None
    codec_options: dict[str, dict] = field(default_factory=dict)  # merged into every setting of that codec
    sweeps: dict[str, list[dict]] = field(default_factory=dict)  # replaces the registered sweep of that codec
    notes: list[str] = field(default_factory=list)


def discover(data_dir: Path, modality: Modality | None) -> tuple[Modality, list[Path]]:
    """Media files under ``data_dir`` (recursively) of one modality, sorted by path."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a folder")
    found: dict[Modality, list[Path]] = {}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            found.setdefault(modality_of(path), []).append(path)
        except ValueError:
            continue  # not media: READMEs, transcripts, ...
    if modality is None:
        if len(found) != 1:
            kinds = ", ".join(f"{len(v)} {k.name.lower()}" for k, v in found.items()) or "no media files"
            raise ValueError(f"{data_dir} holds {kinds}; pass --modality to choose")
        modality = next(iter(found))
    if not found.get(modality):
        raise ValueError(f"{data_dir} holds no {modality.name.lower()} files")
    return modality, found[modality]


def resolve_codecs(names: list[str], modality: Modality, notes: list[str]) -> list[tuple[str, list[dict]]]:
    """(codec, sweep) pairs; ``polycodec`` stands for the project's own codecs of this modality."""
    resolved = []
    for name in names:
        if name == "polycodec":
            own = [e for e in available_codecs() if e.modality == modality
                   and isinstance(e.factory, type) and issubclass(e.factory, StreamCodec)]
            slow = [e.name for e in own if e.factory.fits_per_input]
            if slow:
                notes.append(f"'polycodec' leaves out {', '.join(slow)}: it fits a model per input (minutes per "
                             f"file); name it in --codecs to run it.")
            own = [e for e in own if not e.factory.fits_per_input]
            if not own:
                notes.append(f"polycodec has no {modality.name.lower()} codec yet: only classical codecs were run.")
            resolved += [(e.name, list(e.sweep)) for e in own]
            continue
        entry = codec_entry(name)
        if entry.modality != modality:
            raise ValueError(f"codec {name!r} codes {entry.modality.name.lower()}, not {modality.name.lower()}")
        resolved.append((name, list(entry.sweep) or [{}]))
    if not resolved:
        raise ValueError("no codec to run")
    return resolved


def run_evaluation(config: EvalConfig) -> list[dict]:
    modality, files = discover(config.data_dir, config.modality)
    files = files[: config.max_files] if config.max_files else files
    codecs = [(name, [setting | config.codec_options.get(name, {}) for setting in config.sweeps.get(name, sweep)])
              for name, sweep in resolve_codecs(config.codecs, modality, config.notes)]
    options = {"perception": config.perception, "speech": config.speech, "vmaf": config.vmaf,
               "max_frames": config.max_frames}
    _check_same_options(config.out_dir, {"modality": modality.name.lower()} | options)
    store = ResultStore(config.out_dir / RESULTS_FILE)
    tasks = []
    for path in files:  # file-major, so each worker reuses its decoded reference
        rel = str(path.relative_to(config.data_dir))
        for name, sweep in codecs:
            for setting in sweep:
                key = json.dumps(setting, sort_keys=True)
                if not store.done(rel, name, key):
                    tasks.append((str(path), rel, modality, name, key, options))
    _note_missing_metrics(modality, config)
    skipped = len(files) * sum(len(s) for _, s in codecs) - len(tasks)
    if skipped:
        config.notes.append(f"resumed: {skipped} finished measurements were reused from {RESULTS_FILE}.")
    bar = tqdm(total=len(tasks), desc=f"eval {modality.name.lower()}", unit="run")
    if config.workers <= 1:
        for task in tasks:
            store.add(measure(*task))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # torch and fork do not mix
        with ProcessPoolExecutor(config.workers, mp_context=context) as pool:
            for future in as_completed([pool.submit(measure, *task) for task in tasks]):
                store.add(future.result())
                bar.update()
    bar.close()
    keys = {(str(p.relative_to(config.data_dir)), n, json.dumps(s, sort_keys=True))
            for p in files for n, sweep in codecs for s in sweep}
    return [r for r in store.rows.values() if (r["file"], r["codec"], r["setting"]) in keys]


def _note_missing_metrics(modality: Modality, config: EvalConfig) -> None:
    """Say in the report which optional metrics could not run here, and why, instead of failing."""
    missing: dict[str, str | None] = {}
    if modality == Modality.AUDIO:
        from ..metrics.audio import availability as audio_availability

        missing |= audio_availability()
    if config.perception:
        from ..metrics.perception import availability as perception_availability

        relevant = {Modality.IMAGE: ("classifier", "faces", "people"), Modality.AUDIO: ("asr",) if config.speech else ()}
        missing |= {k: v for k, v in perception_availability().items() if k in relevant.get(modality, ())}
    for name, reason in missing.items():
        if reason:
            config.notes.append(f"metric {name} not computed: {reason}")


def _check_same_options(out_dir: Path, options: dict) -> None:
    """Resuming mixes old and new rows, so both must have been measured the same way."""
    path = out_dir / OPTIONS_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != options:
            changed = ", ".join(k for k in options if previous.get(k) != options[k])
            raise ValueError(f"{out_dir} holds results measured with other options ({changed}); "
                             "use another --out folder or delete it")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(options, indent=1) + "\n")
