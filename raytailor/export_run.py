"""Find the exported model of a tailor run or of one search trial (``raytailor export``)."""

from __future__ import annotations

from pathlib import Path

from raytailor.errors import ExportError
from raytailor.export import read_architecture


def find_model(run_dir: Path, trial: str = "leanest") -> tuple[Path, Path | None]:
    """(model folder with architecture.json + weights.safetensors, its result.json if any)."""
    if (run_dir / "result.json").is_file() and (run_dir / "model").is_dir():  # a `tailor` run
        read_architecture(run_dir / "model")
        return run_dir / "model", run_dir / "result.json"
    if not (run_dir / "trials.parquet").is_file():
        raise ExportError(f"{str(run_dir)!r} is neither a tailor run (result.json) nor a search (trials.parquet)")
    from raytailor.pareto import leanest, read_trials_table

    rows, _ = read_trials_table(run_dir / "trials.parquet")
    if trial == "leanest":
        best = leanest(rows, cost="macs")
        if best is None:
            raise ExportError(f"no trial in {run_dir} met the accuracy target; pass --trial ID")
        trial = best["trial_id"]
    elif trial not in {r["trial_id"] for r in rows}:
        raise ExportError(f"trial {trial!r} is not in {run_dir}/trials.parquet; see its trial_id column")
    if (run_dir / "models" / trial / "architecture.json").is_file():
        result = run_dir / "models" / trial / "result.json"
        return run_dir / "models" / trial, result if result.is_file() else None
    checkpoints = sorted(run_dir.glob(f"trials/*{trial}*/checkpoint_*"))
    if not checkpoints or not (checkpoints[-1] / "model").is_dir():
        raise ExportError(f"trial {trial!r} finished without a model (it failed); pick another trial")
    return checkpoints[-1] / "model", checkpoints[-1] / "result.json"
