"""The ``emolab data stats`` report: a dataset's statistics (:mod:`emolab.data.stats`) rendered for the terminal
(Rich) and to files (JSON + class-distribution PNG). It sits beside the CLI, above the data layer it reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from emolab import plots
from emolab.config import RunConfig
from emolab.data.registry import dataset_spec, load_dataset
from emolab.data.stats import dataset_stats, policy_drops, sample_faces
from emolab.rundir import atomic_write, to_json


def _split_table(stats: dict, title: str) -> Table:
    splits = list(stats["splits"])
    table = Table(title=title)
    table.add_column("label")
    for s in splits:
        table.add_column(f"{s} (n={stats['splits'][s]['n']})", justify="right")
    for label in stats["labels"]:
        table.add_row(label, *(f"{stats['splits'][s]['class_counts'][label]} "
                               f"({stats['splits'][s]['class_shares'][label]:.1%})" for s in splits))
    return table


def _length_table(stats: dict, tag: str) -> Table:
    table = Table(title=f"{tag}: text length (words) and duplicates")
    for col in ("split", "p5", "p50", "p95", "p99", "max", "duplicates within", "conflicting labels"):
        table.add_column(col, justify="right")
    for s, e in stats["splits"].items():
        w = e.get("words_percentiles", {})
        table.add_row(s, *(str(w.get(k, "")) for k in ("p5", "p50", "p95", "p99", "max")),
                      str(e.get("duplicate_texts", "")), str(e.get("duplicates_with_conflicting_labels", "")))
    return table


def _image_table(stats: dict, tag: str) -> Table:
    table = Table(title=f"{tag}: images")
    for col in ("split", "shape", "pixel mean", "pixel std", "near-blank", "duplicates within"):
        table.add_column(col, justify="right")
    for s, e in stats["splits"].items():
        table.add_row(s, "x".join(map(str, e["image_shape"])), str(e["pixel_mean"]), str(e["pixel_std"]),
                      str(e["near_blank_images"]), str(e["duplicate_images"]))
    return table


def show_stats(cfg: RunConfig, taxonomies: list, out: Path, console: Console) -> list[dict]:
    results = []
    for taxonomy in taxonomies:
        data_cfg = cfg.data if taxonomy is None else dataclasses.replace(cfg.data, taxonomy=taxonomy)
        ds = load_dataset(data_cfg, cfg.seed)
        stats = dataset_stats(ds)
        tag = ds.name + (f"-{taxonomy}" if taxonomy else "")
        console.print(_split_table(stats, f"{tag}: class counts"))
        folder = out / tag
        if ds.modality == "image":
            console.print(_image_table(stats, tag))
            grid = plots.face_grid(sample_faces(ds.split("train"), ds.labels.names), folder / "sample_faces.png",
                                   title=f"{tag}: sample training faces per class")
            console.print(f"wrote {grid}")
        else:
            console.print(_length_table(stats, tag))
        console.print("exact duplicates across splits (leakage): " +
                      ", ".join(f"{k} {v}" for k, v in stats["cross_split_duplicates"].items()))
        if dataset_spec(data_cfg.name).multi_label_policies:
            drops = policy_drops(data_cfg, cfg.seed)
            stats["policy_drops"] = drops
            table = Table(title=f"{tag}: examples kept (dropped) per multi-label policy")
            table.add_column("policy")
            for s in ds.splits:
                table.add_column(s, justify="right")
            for policy, row in drops.items():
                table.add_row(policy, *(f"{row[s]['kept']} ({row[s]['dropped']})" for s in ds.splits))
            console.print(table)
        png = plots.class_distribution({s: e["class_counts"] for s, e in stats["splits"].items()},
                                       folder / "class_distribution.png", title=f"{tag}: class distribution")
        atomic_write(folder / "stats.json", to_json(stats) + "\n")
        console.print(f"wrote {png} and {folder / 'stats.json'}\n")
        results.append(stats)
    return results
