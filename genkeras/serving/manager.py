"""Which model versions are loaded: base-path polling, version policies, labels, status.

Mirrors TF Serving's ServerCore with the availability-preserving policy: a new aspired
version is loaded before the one it replaces is unloaded, so a request never finds the model
empty, and that holds both ways: when the newest version's folder is deleted, the newest
remaining version is loaded again before the deleted one is unloaded. A version that fails
to load is reported (state END, its error in `status`) while the previously loaded version
keeps serving, and is tried again as soon as any file under its folder changes. Under a
`latest` policy, when no aspired version loads (after a restart with a broken newest
version, say), the newest older version on disk that loads serves instead. Requests hold a
reference to the `Servable` they resolved, so an unload never cuts a request short.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from genkeras.serving import config as config_lib
from genkeras.serving.batching import Batcher
from genkeras.serving.errors import (
    ServingError,
    clip,
    error_code_number,
    invalid_argument,
    not_found,
    status_of,
)
from genkeras.serving.servable import RunLimits, Servable
from genkeras.serving.versions import (
    VersionState,
    fingerprint,
    policy_kind,
    policy_text,
    version_folders,
    versions_to_unload,
)

log = logging.getLogger("genkeras.serving")


def check_version_choice(version: int | None, label: str | None) -> None:
    """Refuses a model spec that names both a version number and a version label.

    TF Serving answers INVALID_ARGUMENT for it, over REST and gRPC alike.

    Args:
        version: the version number asked for, or `None`.
        label: the version label asked for, or `None`.

    Raises:
        ServingError: INVALID_ARGUMENT when both are given.
    """
    if version is not None and label is not None:
        raise ServingError(
            invalid_argument(
                f"Both model version ({version}) and model version label ({clip(label)}) "
                "cannot be supplied."
            )
        )


class ModelManager:
    """Loads what the config asks for and answers look-ups by name, version or label.

    Args:
        server_config: the `ModelServerConfig` to serve.
        config_file: the file it was read from, watched by `start`; `None` for none.
        path_maps: `(container path, host path)` pairs for the config's base paths.
        batcher: the `Batcher` every servable uses, or `None` for no batching.
        warmup: replay each version's warm-up records when it loads.
        per_model_batching: batch a version only with its own batching_params.pbtxt.
        limits: what one request may make a servable do (`RunLimits`).
    """

    def __init__(
        self,
        server_config,
        config_file=None,
        path_maps=(),
        batcher=None,
        warmup=True,
        per_model_batching=False,
        limits: RunLimits | None = None,
    ):
        self.config_file = config_file
        self.path_maps = list(path_maps)
        self.batcher = batcher
        self.per_model_batching = per_model_batching
        self.warmup = warmup
        self.limits = limits or RunLimits()
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict = {}  # name -> ModelConfig
        self._states: dict[str, dict[int, VersionState]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._warned: set[str] = set()  # duplicate version folders already logged
        self.set_config(server_config)

    # -- configuration --------------------------------------------------------------------------
    def set_config(self, server_config) -> None:
        with self._lock:
            self._models = {m.name: m for m in server_config.model_config_list.config}
            for name in list(self._states):
                if name not in self._models:  # removed from the config: unload everything
                    for version, state in self._states[name].items():
                        if state.servable is not None:
                            self._unload(name, version, state, "its model left the config")
            for name in self._models:
                self._states.setdefault(name, {})

    def base_path(self, name: str) -> Path:
        return config_lib.resolve_base_path(
            self._models[name].base_path, self.config_file, self.path_maps
        )

    # -- polling --------------------------------------------------------------------------------
    def poll_once(self) -> None:
        """One pass over every model's base path: load aspired versions, unload the others."""
        with self._load_lock:
            with self._lock:
                models = dict(self._models)
            for name, model in models.items():
                try:
                    self._poll_model(name, model)
                except Exception:  # noqa: BLE001 - the poller must survive anything
                    log.exception("polling %s failed", name)

    def _poll_model(self, name: str, model) -> None:
        base = self.base_path(name)
        listed = version_folders(base)
        if listed is None:
            if os.path.exists(base):  # a passing listing error: change nothing this round
                return
            listed = {}, []
        folders, duplicates = listed  # version -> folder name (`00000123` is version 123)
        for line in set(duplicates) - self._warned:
            log.warning(line)
        self._warned.update(duplicates)
        on_disk = list(folders)
        aspired = config_lib.aspired_versions(model, on_disk)
        states = self._states.setdefault(name, {})
        keep = set(aspired)
        for version in sorted(aspired, reverse=True):  # the newest first, as TF Serving
            self._ensure_loaded(name, version, base / folders[version], states)
        serving = any(states[v].state == "AVAILABLE" for v in aspired if v in states)
        if aspired and not serving and policy_kind(model) == "latest":
            for version in sorted(set(on_disk) - keep, reverse=True):
                if self._ensure_loaded(name, version, base / folders[version], states):
                    keep.add(version)  # the newest older version that loads serves for now
                    break
        with self._lock:
            for version in versions_to_unload(states, keep, aspired):
                reason = "its folder is gone" if version not in on_disk else "not aspired"
                self._unload(name, version, states[version], reason)

    def _ensure_loaded(self, name: str, version: int, path: Path, states: dict) -> bool:
        """Loads `version` unless it serves or failed with its folder unchanged since.

        Returns:
            Whether the version is AVAILABLE afterwards.
        """
        current = states.get(version)
        if current is not None and current.state in ("AVAILABLE", "LOADING"):
            return current.state == "AVAILABLE"
        if not path.is_dir():
            return False
        stamp = fingerprint(path)
        if current is not None and current.failed and current.fingerprint == stamp:
            return False  # failed and unchanged since: don't retry in a loop
        if current is not None and current.failed:
            log.info("Retrying servable version {name: %s version: %d}: it changed", name, version)
        with self._lock:
            states[version] = VersionState("LOADING", fingerprint=stamp)
        log.info("Loading servable: {name: %s version: %d}", name, version)
        started = time.perf_counter()
        try:
            servable = Servable(name, version, path)
            servable.batcher = self._batcher_for(path)
            servable.limits = self.limits
            if self.warmup:
                servable.warm_up()
        except Exception as error:  # noqa: BLE001
            code, message = status_of(error)
            log.error("Loading servable: {name: %s version: %d} failed: %s", name, version, message)
            with self._lock:
                states[version] = VersionState("END", code, message, fingerprint=stamp)
            return False
        with self._lock:
            states[version] = VersionState("AVAILABLE", servable=servable, fingerprint=stamp)
        log.info(
            "Successfully loaded servable version {name: %s version: %d} in %.2f s",
            name,
            version,
            time.perf_counter() - started,
        )
        return True

    def _unload(self, name: str, version: int, state: VersionState, reason: str) -> None:
        """Drops a loaded version (requests holding it finish on it); logged like a load."""
        log.info("Unloading servable version {name: %s version: %d} (%s)", name, version, reason)
        state.servable, state.state, state.error_code, state.error_message = None, "END", "OK", ""
        log.info("Done unloading servable version {name: %s version: %d}", name, version)

    def unresolved_labels(self) -> list[str]:
        """One line per version label that names a version not loaded now (for warnings)."""
        lines = []
        with self._lock:
            for name, model in sorted(self._models.items()):
                states = self._states.get(name, {})
                loaded = sorted(v for v, s in states.items() if s.state == "AVAILABLE")
                for label, version in sorted(model.version_labels.items()):
                    if version in loaded:
                        continue
                    lines.append(
                        f"Model {name}: version label {label!r} -> {version}, which is not "
                        f"loaded (loaded: {loaded}; policy {policy_text(model)}); requests to "
                        f"labels/{label} fail until the policy keeps version {version} loaded, "
                        f"e.g. model_version_policy {{ specific {{ versions: {version} }} }}"
                    )
        return lines

    def _batcher_for(self, path: Path):
        """The global batcher, or with per-model parameters one from batching_params.pbtxt (or none)."""  # noqa: E501
        if self.batcher is None or not self.per_model_batching:
            return self.batcher
        params_file = path / "batching_params.pbtxt"
        if not params_file.exists():
            return None
        return Batcher(config_lib.read_batching_parameters(params_file))

    def start(
        self, file_system_poll_wait_seconds: float = 1.0, config_poll_wait_seconds: float = 0.0
    ) -> None:
        self.poll_once()
        for line in self.unresolved_labels():
            log.warning(line)
        if file_system_poll_wait_seconds > 0:
            self._spawn(self._poll_loop, file_system_poll_wait_seconds)
        if config_poll_wait_seconds > 0 and self.config_file:
            self._spawn(self._config_loop, config_poll_wait_seconds)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.poll_once()

    def _config_loop(self, seconds: float) -> None:
        last = self._config_stamp()
        while not self._stop.wait(seconds):
            stamp = self._config_stamp()
            if stamp == last:
                continue
            last = stamp
            try:
                self.set_config(config_lib.read_model_server_config(self.config_file))
                log.info("Reloaded model config %s", self.config_file)
                self.poll_once()
                for line in self.unresolved_labels():
                    log.warning(line)
            except Exception as error:  # noqa: BLE001 - keep the old config on a bad edit
                log.error("Ignoring model config %s: %s", self.config_file, error)

    def _config_stamp(self):
        try:
            stat = os.stat(self.config_file)
            return stat.st_mtime_ns, stat.st_size
        except OSError:
            return None

    def stop(self) -> None:
        self._stop.set()

    # -- look-ups -------------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def label_version(self, name: str, label: str) -> int:
        with self._lock:
            model = self._models.get(name)
            if model is None or label not in model.version_labels:
                raise ServingError(
                    invalid_argument(f"Unrecognized servable version label: {clip(label)}")
                )
            return model.version_labels[label]

    def resolve_version(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> int | None:
        """The version number a request asks for: `version`, `label`'s, or `None` (latest).

        Args:
            name: the model name.
            version: the version number asked for, or `None`.
            label: the version label asked for, or `None`.

        Returns:
            The version number, or `None` when neither is given.

        Raises:
            ServingError: INVALID_ARGUMENT when both are given or the label is unknown.
        """
        check_version_choice(version, label)
        if label is not None:
            version = self.label_version(name, label)
        return version

    def get_servable(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Servable:
        """The loaded `Servable` a request asks for (the latest available without a version).

        Raises:
            ServingError: INVALID_ARGUMENT for an empty name (server_core.cc's
                ServableRequestFromModelSpec), NOT_FOUND when that version is not available.
        """
        if not name:
            raise ServingError(invalid_argument("ModelSpec has no name specified."))
        version = self.resolve_version(name, version, label)
        with self._lock:
            states = self._states.get(name, {}) if name in self._models else {}
            if version is None:
                available = [v for v, s in states.items() if s.state == "AVAILABLE" and s.servable]
                if not available:
                    raise ServingError(
                        not_found(f"Servable not found for request: Latest({clip(name)})")
                    )
                return states[max(available)].servable
            state = states.get(version)
            if state is None or state.state != "AVAILABLE" or state.servable is None:
                raise ServingError(
                    not_found(f"Servable not found for request: Specific({clip(name)}, {version})")
                )
            return state.servable

    def status(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelStatusResponse as TF Serving's `get_model_status_impl.cc` builds it.

        With a version number, that version's state; otherwise (with a version label too:
        TF Serving reads only `model_spec.version`) every version it knows, newest first.
        A label the model does not define is refused, where TF Serving would ignore it.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for an
                unknown label or both a version and a label.
        """
        from tensorflow_serving.apis import get_model_status_pb2

        check_version_choice(version, label)
        if label is not None:
            self.label_version(name, label)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if version not in states:
                raise ServingError(
                    not_found(f"Could not find version {version} of model {clip(name)}")
                )
            chosen = [(version, states[version])]
        else:
            if not states:
                raise ServingError(not_found(f"Could not find any versions of model {clip(name)}"))
            chosen = sorted(states.items(), reverse=True)
        for v, state in chosen:
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            entry.status.error_code = error_code_number(state.error_code)
            entry.status.error_message = state.error_message
        return response

    def metadata(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelMetadataResponse with the `signature_def` field, as TF Serving answers it."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.get_servable(name, version, label)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.saved_signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response
