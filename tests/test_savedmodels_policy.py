"""savedmodels/ keeps only the versions serving/models.config serves, and the named exceptions.

Every export adds its size to the repository's history for good, so the tree holds the served
versions (the `specific` policies of serving/models.config) and the few in `ALLOWED` below, each
with its reason. Older versions live in git history: the served version's model_card.json names,
under `lineage_commits`, the commit holding each of them and the command restoring it
(`git checkout COMMIT -- savedmodels/NAME/VERSION`). README.md, "Serving", states the policy.
Fast: it reads the config with protobuf's text format and never imports TensorFlow.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import ROOT, served_versions

from genkeras.serving import config as config_lib

CONFIG = ROOT / "serving" / "models.config"
SAVEDMODELS = ROOT / "savedmodels"
VERSION = re.compile(r"[0-9]+")  # a version folder, as TF Serving reads one (`00000123` is 123)
# Version folders kept although models.config does not serve them: {(name, version): reason}.
# A test or a document must need the folder itself; figures of older versions cite the commit
# in the served card's `lineage_commits` instead.
ALLOWED: dict[tuple[str, int], str] = {}


def model_folders():
    """{name: savedmodels/NAME} for every model folder on disk (hidden ones skipped)."""
    if not SAVEDMODELS.is_dir():
        return {}
    return {p.name: p for p in sorted(SAVEDMODELS.iterdir()) if p.is_dir() and p.name[0] != "."}


def version_folders(base):
    """[(version, folder)] of the version folders of `base`, in order."""
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.is_dir() and VERSION.fullmatch(p.name)]
    return sorted((int(p.name), p) for p in found)


def served_models():
    """[(model config, base path on this machine)] of serving/models.config."""
    config = config_lib.read_model_server_config(CONFIG)
    maps = config_lib.parse_path_maps([], CONFIG)
    return [
        (model, config_lib.resolve_base_path(model.base_path, CONFIG, maps))
        for model in config.model_config_list.config
    ]


def test_every_model_names_the_versions_it_serves():
    """A `specific` policy is the list of versions the tree keeps; `latest` or `all` would
    serve whatever is on disk, and nothing would say which versions belong in the tree."""
    for model, _ in served_models():
        kind = model.model_version_policy.WhichOneof("policy_choice")
        assert kind == "specific" and model.model_version_policy.specific.versions, (
            f"serving/models.config: {model.name} has a {kind or 'default (latest)'} version "
            "policy; list the versions it serves: model_version_policy { specific { versions: N } }"
        )


def test_every_version_folder_is_served_or_allowed():
    served = served_versions()
    problems = []
    for name, base in model_folders().items():
        for version, folder in version_folders(base):
            if version in served.get(name, ()) or (name, version) in ALLOWED:
                continue
            where = folder.relative_to(ROOT)
            problems.append(
                f"{where}: serving/models.config does not serve it. Remove it from the tree "
                f"(`git rm -r {where}`, or delete it if it was never committed; git history "
                f"keeps a committed one: add the last commit holding it, `git log -1 "
                f"--format=%H -- {where}`, to the served version's model_card.json under "
                f'"lineage_commits"), or serve it (`versions: {version}` in {name}\'s '
                f"`specific` policy), or, if a test or a document needs the folder itself, add "
                f"({name!r}, {version}) to ALLOWED in tests/test_savedmodels_policy.py with why"
            )
    assert not problems, "\n".join(problems)


def shown(path):
    """`path` relative to the repository when it is inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def test_every_served_version_is_on_disk():
    problems = []
    for model, base in served_models():
        on_disk = {version for version, _ in version_folders(base)}
        for version in model.model_version_policy.specific.versions:
            if version not in on_disk:
                problems.append(
                    f"serving/models.config serves {model.name} version {version}, but "
                    f"{shown(base)}/{version} does not exist: export it (genkeras export --model "
                    f"{model.name} --version {version}) or restore it from git (the commit is in "
                    f"the served card's lineage_commits), or drop it from the policy"
                )
    assert not problems, "\n".join(problems)


def test_allowed_versions_are_on_disk_unserved_and_say_why():
    served = served_versions()
    for (name, version), reason in ALLOWED.items():
        on_disk = {v for v, _ in version_folders(SAVEDMODELS / name)}
        assert version in on_disk, f"ALLOWED names savedmodels/{name}/{version}: not on disk"
        assert version not in served.get(name, ()), f"{name} {version} is served: not needed"
        assert reason.strip(), f"ALLOWED[({name!r}, {version})] needs the reason it is kept"


def cards():
    """[(savedmodels/NAME/VERSION, its model card)] of the versions on disk."""
    found = []
    for base in model_folders().values():
        for _, folder in version_folders(base):
            if (folder / "model_card.json").is_file():
                found.append((folder, json.loads((folder / "model_card.json").read_text())))
    return found


def test_cards_say_where_the_versions_they_name_are():
    """A version a card names (`savedmodels/NAME/V` in its lineage, `reexport_of`) is on disk
    or in the card's `lineage_commits`, with the command that restores it."""
    problems = []
    for folder, card in cards():
        name, on_disk = folder.parent.name, {v for v, _ in version_folders(folder.parent)}
        named = {int(v) for v in re.findall(rf"savedmodels/{name}/([0-9]+)\b", json.dumps(card))}
        if isinstance(card.get("reexport_of"), dict):
            named.add(int(card["reexport_of"]["version"]))
        commits = card.get("lineage_commits", {})
        for version in sorted(named - on_disk - {int(v) for v in commits}):
            problems.append(
                f"{folder.relative_to(ROOT)}/model_card.json names {name} version {version}, "
                f'which is not on disk: add it under "lineage_commits" as {{"commit": HASH, '
                f'"restore": "git checkout HASH -- savedmodels/{name}/{version}"}}, HASH from '
                f"`git log -1 --format=%H -- savedmodels/{name}/{version}`"
            )
        for version, entry in commits.items():
            path = f"savedmodels/{name}/{version}"
            assert re.fullmatch("[0-9a-f]{40}", entry["commit"]), (folder, version, entry)
            assert entry["restore"] == f"git checkout {entry['commit']} -- {path}", (folder, entry)
    assert not problems, "\n".join(problems)


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_lineage_commits_hold_the_versions_they_name():
    """Each restore command of a card works: its commit, an ancestor of HEAD, holds the folder
    (one `git cat-file` per entry; skipped outside a full git checkout)."""
    try:
        shallow = git("rev-parse", "--is-shallow-repository")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is not available")
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        pytest.skip("not a full git checkout: the history is not here")
    entries = [
        (folder, version, entry["commit"])
        for folder, card in cards()
        for version, entry in card.get("lineage_commits", {}).items()
    ]
    for folder, version, commit in entries:
        path = f"savedmodels/{folder.parent.name}/{version}"
        assert git("cat-file", "-e", f"{commit}:{path}/saved_model.pb").returncode == 0, (
            f"{folder.relative_to(ROOT)}/model_card.json: commit {commit} has no {path}"
        )
        assert git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (
            f"{folder.relative_to(ROOT)}/model_card.json: {commit} is not in HEAD's history"
        )
