"""Shared refs vs files: how a trial gets its backbone + teacher, and what N trials cost.

1. Inside one Ray worker (a trial's process), interleaved rounds of
   - object store: ``ray.get`` of the SharedTask ref (zero-copy numpy) + building both networks;
   - files: reading the same two state dicts from .safetensors files + building both networks;
   reported as medians, for the fetch alone and for fetch + build.
2. Object-store bytes on the node while N concurrent tasks hold the SharedTask (N = 1, 2, 4, 8):
   one copy, whatever N.

    .venv/bin/python benchmarks/object_store.py [--arch resnet34]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray


def build_shared(arch: str):
    import torch

    from raytailor.backbones import create_backbone
    from raytailor.data import load_splits
    from raytailor.run import Prepared
    from raytailor.search.shared import SharedTask, to_numpy_state
    from raytailor.spec import parse_spec

    spec = parse_spec({"name": "bench", "method": "nettailor", "backbone": {"arch": arch},
                       "data": {"dataset": "digits", "image_size": 32}, "space": {}})
    splits = load_splits(dataset="digits", image_size=32)
    pretrained = create_backbone(arch, num_classes=10)
    prepared = Prepared(spec=spec, splits=splits, pretrained=pretrained, device=torch.device("cpu"))
    teacher_state = to_numpy_state(create_backbone(arch, num_classes=10))
    return SharedTask.from_prepared(prepared, teacher_state=teacher_state, teacher_metrics={"val_accuracy": 0.0})


@ray.remote(num_cpus=1)
def time_in_trial(ref_holder: list, files: list[str], rounds: int) -> dict:
    from raytailor.backbones.weights import read_state_dict

    def from_store(build: bool):
        shared = ray.get(ref_holder[0])
        if build:
            shared.network_from_state(shared.backbone_state, "cpu"), shared.network_from_state(shared.teacher_state, "cpu")
        return shared

    def from_files(build: bool, template):
        states = [read_state_dict(Path(f)) for f in files]
        if build:
            for state in states:
                network = template.network_from_state({k: v.numpy() for k, v in state.items()}, "cpu")
                del network
        return states

    template = ray.get(ref_holder[0])
    times = {key: [] for key in ("store_fetch", "file_fetch", "store_build", "file_build")}
    for _ in range(rounds):
        for build in (False, True):
            start = time.perf_counter()
            from_store(build)
            times[f"store_{'build' if build else 'fetch'}"].append(time.perf_counter() - start)
            start = time.perf_counter()
            from_files(build, template)
            times[f"file_{'build' if build else 'fetch'}"].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


@ray.remote(num_cpus=0.5)
class Holder:
    def hold(self, ref_holder: list) -> int:
        self.shared = ray.get(ref_holder[0])  # keeps the zero-copy views alive
        return self.shared.nbytes


def store_bytes() -> int:
    from ray._private.internal_api import node_stats

    node = ray.nodes()[0]
    return node_stats(node["NodeManagerAddress"], node["NodeManagerPort"]).store_stats.object_store_bytes_used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from safetensors.numpy import save_file

    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    shared = build_shared(args.arch)
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for name, state in (("backbone", shared.backbone_state), ("teacher", shared.teacher_state)):
            path = Path(folder) / f"{name}.safetensors"
            save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
            files.append(str(path))
        ref = ray.put(shared)
        t = ray.get(time_in_trial.remote([ref], files, args.rounds))
    print(f"{args.arch}: backbone + teacher weights {(sum(v.nbytes for v in shared.backbone_state.values()) * 2) / 2**20:.0f} MiB, "
          f"shared task {shared.nbytes / 2**20:.0f} MiB")
    print(f"  fetch only:      object store {t['store_fetch'] * 1000:8.1f} ms   files {t['file_fetch'] * 1000:8.1f} ms   "
          f"ratio store/files {t['store_fetch'] / t['file_fetch']:.3f}")
    print(f"  fetch + build:   object store {t['store_build'] * 1000:8.1f} ms   files {t['file_build'] * 1000:8.1f} ms   "
          f"ratio store/files {t['store_build'] / t['file_build']:.3f}")
    baseline = store_bytes()
    single = None
    for n in (1, 2, 4, 8):
        holders = [Holder.remote() for _ in range(n)]
        ray.get([h.hold.remote([ref]) for h in holders])
        used = store_bytes()
        single = single or used
        print(f"  {n} concurrent trials holding it: object store {used / 2**20:7.1f} MiB "
              f"({used / single:.2f}x one copy; {n} private copies would be {n:.0f}x)")
        for h in holders:
            ray.kill(h)
    del baseline
    ray.shutdown()


if __name__ == "__main__":
    main()
