"""One model's versions on disk and in the server: their states, what changed, which to keep.

`VersionState` is where a version stands (GetModelStatus's states). `fingerprint` sums up
everything under a version folder, so a version that failed to load is tried again once any
file of it changes (a truncated `variables.data-*` replaced in place). `versions_to_unload`
is TF Serving's availability-preserving policy (`core/availability_preserving_policy.cc`):
versions the policy no longer asks for are unloaded only once an aspired version serves,
and until then the newest of them keeps serving.

Version folders are named as TF Serving names them (`sources/storage_path/
file_system_storage_path_source.cc`): any folder whose name is a non-negative integer, so
`00000123` (TF Serving's testdata) is version 123, loaded from `00000123` itself. When two
names give the same number (`1` and `001`), TF Serving walks the names in sorted order and the
last one wins (`1`), with a warning that the other is ignored; `version_folders` does the same.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from genkeras.serving.servable import Servable

# ASCII digits only (`\d` would take other scripts' digits); TF Serving's absl::SimpleAtoi
# also takes a sign and surrounding blanks, which no exporter writes.
_VERSION_NAME = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass
class VersionState:
    """Where one version stands, as GetModelStatus reports it, and its servable once loaded.

    Attributes:
        state: START, LOADING, AVAILABLE, UNLOADING or END (ModelVersionStatus.State names).
        error_code: the canonical code of a failed load (`"OK"` otherwise).
        error_message: the failed load's message.
        servable: the loaded `Servable` while AVAILABLE.
        fingerprint: the folder's `fingerprint` when the last load started.
    """

    state: str
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple | None = None

    @property
    def failed(self) -> bool:
        return self.state == "END" and self.error_code != "OK"


def version_folders(base: Path) -> tuple[dict[int, str], list[str]] | None:
    """The version folders of `base`: version -> folder name, and a warning per duplicate.

    A folder is a version when its name is a non-negative integer that fits an int64 (as
    TF Serving parses it); `00000123` is version 123. Among names of the same number the
    last in sorted order wins (`1` over `001`), as in TF Serving.

    Args:
        base: the model's base path.

    Returns:
        `(folders, warnings)`, or None when `base` cannot be listed.
    """
    try:
        names = sorted(
            p.name for p in base.iterdir() if _VERSION_NAME.fullmatch(p.name) and p.is_dir()
        )
    except OSError:
        return None
    folders: dict[int, str] = {}
    warnings = []
    for name in names:
        version = int(name)
        if version > _INT64_MAX:
            continue
        if version in folders:
            warnings.append(
                f"Duplicate version directories detected under {base}. Version {version} will "
                f"be loaded from {name}, {folders[version]} will be ignored."
            )
        folders[version] = name
    return folders, warnings


def fingerprint(path: Path) -> tuple:
    """Every file and folder under `path` with its size, modification time and inode.

    Changes when anything in a version folder is written, replaced, added or removed.
    """
    items = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files) + dirs:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            items.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(items)


def policy_kind(model_config) -> str:
    """`"latest"`, `"all"` or `"specific"` (no policy is `latest { num_versions: 1 }`)."""
    return model_config.model_version_policy.WhichOneof("policy_choice") or "latest"


def policy_text(model_config) -> str:
    """The version policy as models.config writes it, for log lines."""
    policy = model_config.model_version_policy
    kind = policy_kind(model_config)
    if kind == "specific":
        return "specific { " + " ".join(f"versions: {v}" for v in policy.specific.versions) + " }"
    if kind == "all":
        return "all {}"
    count = policy.latest.num_versions if policy.HasField("latest") else 0
    return f"latest {{ num_versions: {max(1, count)} }}"


def versions_to_unload(
    states: dict[int, VersionState], keep: set[int], aspired: list[int]
) -> list[int]:
    """The loaded versions to unload now, TF Serving's availability-preserving way.

    Args:
        states: version -> state.
        keep: the versions that stay (the aspired ones and any fallback).
        aspired: the versions the policy asks for.

    Returns:
        Loaded versions outside `keep`: all of them when the policy asks for none or a kept
        version serves; otherwise all but the newest, which serves until one does.
    """
    loaded = sorted(v for v, s in states.items() if s.servable is not None and v not in keep)
    kept_serving = any(states[v].state == "AVAILABLE" for v in keep if v in states)
    if not aspired or kept_serving:
        return loaded
    return loaded[:-1]
