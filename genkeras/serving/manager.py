"""Which model versions are loaded: base-path polling, version policies, labels, status.

Mirrors TF Serving's ServerCore with the availability-preserving policy: a new aspired
version is loaded before the one it replaces is unloaded, so a request never finds the model
empty; a version that fails to load is reported (state END, its error in `status`) while the
previously loaded version keeps serving. Requests hold a reference to the `Servable` they
resolved, so an unload never cuts a request short.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path

from genkeras.serving import config as config_lib
from genkeras.serving.batching import Batcher
from genkeras.serving.errors import (
    ServingError,
    error_code_number,
    invalid_argument,
    not_found,
    status_of,
)
from genkeras.serving.servable import WARMUP_FILE, Servable

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
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."  # noqa: E501
            )
        )


@dataclasses.dataclass
class VersionState:
    """Where one version stands, as GetModelStatus reports it, and its servable once loaded."""

    state: str  # START, LOADING, AVAILABLE, UNLOADING, END (ModelVersionStatus.State names)
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple | None = None


def _fingerprint(path: Path) -> tuple:
    """Changes when a version folder's SavedModel is rewritten (a failed load is retried then)."""
    items = []
    for name in ("saved_model.pb", "variables/variables.index", str(WARMUP_FILE)):
        try:
            stat = (path / name).stat()
            items.append((name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            items.append((name, None, None))
    return tuple(items)


class ModelManager:
    """Loads what the config asks for and answers look-ups by name, version or label.

    Args:
        server_config: the `ModelServerConfig` to serve.
        config_file: the file it was read from, watched by `start`; `None` for none.
        path_maps: `(container path, host path)` pairs for the config's base paths.
        batcher: the `Batcher` every servable uses, or `None` for no batching.
        warmup: replay each version's warm-up records when it loads.
        per_model_batching: batch a version only with its own batching_params.pbtxt.
    """

    def __init__(
        self,
        server_config,
        config_file=None,
        path_maps=(),
        batcher=None,
        warmup=True,
        per_model_batching=False,
    ):
        self.config_file = config_file
        self.path_maps = list(path_maps)
        self.batcher = batcher
        self.per_model_batching = per_model_batching
        self.warmup = warmup
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._models: dict = {}  # name -> ModelConfig
        self._states: dict[str, dict[int, VersionState]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.set_config(server_config)

    # -- configuration --------------------------------------------------------------------------
    def set_config(self, server_config) -> None:
        with self._lock:
            self._models = {m.name: m for m in server_config.model_config_list.config}
            for name in list(self._states):
                if name not in self._models:  # removed from the config: unload everything
                    for state in self._states[name].values():
                        if state.servable is not None:
                            state.servable, state.state = None, "END"
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
        try:
            on_disk = sorted(
                int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)
            )
        except OSError:
            on_disk = []
        aspired = config_lib.aspired_versions(model, on_disk)
        states = self._states.setdefault(name, {})
        for version in aspired:
            path = base / str(version)
            fingerprint = _fingerprint(path)
            current = states.get(version)
            if current is not None and current.state in ("AVAILABLE", "LOADING"):
                continue
            if (
                current is not None
                and current.state == "END"
                and current.fingerprint == fingerprint
            ):
                continue  # failed (or unloaded) and unchanged since: don't retry in a loop
            with self._lock:
                states[version] = VersionState("LOADING", fingerprint=fingerprint)
            log.info("Loading servable: {name: %s version: %d}", name, version)
            started = time.perf_counter()
            try:
                servable = Servable(name, version, path)
                servable.batcher = self._batcher_for(path)
                if self.warmup:
                    servable.warm_up()
            except Exception as error:  # noqa: BLE001
                code, message = status_of(error)
                log.error(
                    "Loading servable: {name: %s version: %d} failed: %s", name, version, message
                )
                with self._lock:
                    states[version] = VersionState("END", code, message, fingerprint=fingerprint)
                continue
            with self._lock:
                states[version] = VersionState(
                    "AVAILABLE", servable=servable, fingerprint=fingerprint
                )
            log.info(
                "Successfully loaded servable version {name: %s version: %d} in %.2f s",
                name,
                version,
                time.perf_counter() - started,
            )
        with self._lock:
            aspired_available = any(states[v].state == "AVAILABLE" for v in aspired if v in states)
            for version, state in states.items():
                if version in aspired or state.servable is None:
                    continue
                gone = version not in on_disk
                if aspired_available or gone or not aspired:
                    # Availability preserving: unload only once an aspired version serves.
                    state.servable, state.state, state.error_code, state.error_message = (
                        None,
                        "END",
                        "OK",
                        "",
                    )

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
                    invalid_argument(f"Unrecognized servable version label: {label}")
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
            ServingError: NOT_FOUND when that version is not available.
        """
        version = self.resolve_version(name, version, label)
        with self._lock:
            states = self._states.get(name, {}) if name in self._models else {}
            if version is None:
                available = [v for v, s in states.items() if s.state == "AVAILABLE" and s.servable]
                if not available:
                    raise ServingError(not_found(f"Servable not found for request: Latest({name})"))
                return states[max(available)].servable
            state = states.get(version)
            if state is None or state.state != "AVAILABLE" or state.servable is None:
                raise ServingError(
                    not_found(f"Servable not found for request: Specific({name}, {version})")
                )
            return state.servable

    def status(self, name: str, version: int | None = None, label: str | None = None):
        """GetModelStatusResponse for the model (one version when asked by number or label)."""
        from tensorflow_serving.apis import get_model_status_pb2

        version = self.resolve_version(name, version, label)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if version not in states:
                raise ServingError(not_found(f"Could not find version {version} of model {name}"))
            chosen = [(version, states[version])]
        else:
            if not states:
                raise ServingError(not_found(f"Could not find any versions of model {name}"))
            chosen = sorted(states.items())
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
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response
