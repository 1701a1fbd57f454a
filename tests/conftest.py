"""Shared fixtures: real TFDS data (offline through $GENKERAS_MANUAL_DIR) and fresh processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The longest files first: `pytest -n 2 --dist loadfile` (pyproject.toml) hands the workers
# whole files in collection order, so a long file collected last would run alone at the end.
# Ranked by `pytest --durations=0` (docs/testing.md); the other files follow in their order.
LONGEST_FILES_FIRST = [
    "test_jax_backend.py",
    "test_pixel_models.py",
    "test_train_cli.py",
    "test_readme.py",
    "test_pixelrnn.py",
    "test_pixel_colour.py",
    "test_serving_limits.py",
    "test_scale.py",
    "test_pixelrnn_colour.py",
    "test_explorer.py",
    "test_bayes.py",
    "test_pretrained.py",
]


def pytest_collection_modifyitems(items):
    """Runs the longest files first (a stable sort: tests keep their order within a file)."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory):
    """Prepared TFDS data shared by the whole session.

    $GENKERAS_DATA_DIR is reused when set (a warm cache); otherwise TFDS prepares into a
    temporary folder from the archives in $GENKERAS_MANUAL_DIR (or downloads them).
    """
    if os.environ.get("GENKERAS_DATA_DIR"):
        return Path(os.environ["GENKERAS_DATA_DIR"])
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp("tfds")
    else:  # pytest -n: the workers share one folder, which the first one prepares
        import fcntl

        from genkeras import data

        shared = tmp_path_factory.getbasetemp().parent
        folder = shared / "tfds"
        with open(shared / "tfds.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data.prepare("mnist", data_dir=folder)
    os.environ["GENKERAS_DATA_DIR"] = str(folder)
    return folder


def run_python(
    code: str, *args, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        cwd=env.get("CWD", ROOT) if env else ROOT,
    )


def call_signatures_in_fresh_tensorflow(export_path, calls: dict) -> dict:
    """Loads a SavedModel in one new process that imports only tensorflow and numpy, and makes
    every call in `calls`: `{signature: inputs}` or `{key: (signature, inputs)}` (to call one
    signature several times), inputs being `{input name: numpy array}`. Returns
    `{key: {output name: numpy array}}`.

    The child fails if genkeras ends up imported, so this proves the export stands on its own,
    as it must under TensorFlow Serving. (TensorFlow itself imports parts of keras; the child
    never does.)
    """
    import pickle

    calls = {key: call if isinstance(call, tuple) else (key, call) for key, call in calls.items()}
    work = Path(tempfile.mkdtemp(prefix="signature-calls-"))
    (work / "calls.pkl").write_bytes(pickle.dumps(calls))
    result = run_python(
        """
        import pickle, sys, tensorflow as tf
        path, work = sys.argv[1:3]
        loaded = tf.saved_model.load(path, tags=["serve"])
        results = {}
        calls = pickle.loads(open(work + "/calls.pkl", "rb").read())
        for key, (signature, inputs) in calls.items():
            outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
            results[key] = {k: v.numpy() for k, v in outputs.items()}
        assert "genkeras" not in sys.modules, "the export needed genkeras"
        open(work + "/results.pkl", "wb").write(pickle.dumps(results))
        """,
        export_path,
        work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return pickle.loads((work / "results.pkl").read_bytes())


def call_savedmodel_in_fresh_tensorflow(export_path, signature: str, inputs: dict) -> dict:
    """One signature's outputs from a fresh TensorFlow-only process (see the function above)."""
    return call_signatures_in_fresh_tensorflow(export_path, {signature: inputs})[signature]


_PORTS_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free TCP port on the loopback interface, never one this process handed out before
    (two calls in a row may otherwise get the same port: a server's gRPC and REST ports)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _PORTS_HANDED_OUT:
            _PORTS_HANDED_OUT.add(port)
            return port


@contextlib.contextmanager
def genkeras_server(args, work: Path, ready, timeout: float = 180):
    """Runs `genkeras serve ARGS` until `ready()` is true, yields the process, then stops it.

    The server's output goes to `work/server.log`, quoted when it dies or never gets ready.
    `ready` may raise OSError (or any error) while the server is still starting.
    """
    log_path = work / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "genkeras.cli", "serve", *map(str, args)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            deadline = time.time() + timeout
            while True:
                assert process.poll() is None, log_path.read_text()[-3000:]
                try:
                    if ready():
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if time.time() > deadline:
                    pytest.fail("server did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def serve_to_end(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs `genkeras serve ARGS` to its end (runs that must stop by themselves: refusals)."""
    return subprocess.run(
        [sys.executable, "-m", "genkeras.cli", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def rest_json(port: int, path: str, body=None) -> tuple[int, dict]:
    """`(HTTP status, parsed JSON)` of a GET (no body) or a POST of `body` as JSON."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def served_versions() -> dict[str, list[int]]:
    """{model name: the versions its `specific` policy lists} in serving/models.config."""
    from genkeras.serving.config import read_model_server_config  # protobuf only, no TensorFlow

    config = read_model_server_config(ROOT / "serving" / "models.config")
    return {
        model.name: sorted(model.model_version_policy.specific.versions)
        for model in config.model_config_list.config
    }


def served_export(name: str) -> Path | None:
    """savedmodels/NAME/VERSION for the newest version serving/models.config serves, or None
    when the config does not list NAME. The tree keeps only the served versions
    (tests/test_savedmodels_policy.py), so a test that uses a shipped export takes this one;
    the path may be missing (not exported yet): check `.exists()`."""
    versions = served_versions().get(name)
    if not versions:
        return None
    base = ROOT / "savedmodels" / name
    folders = [p for p in base.glob("*") if re.fullmatch("[0-9]+", p.name)]
    folders = [p for p in folders if int(p.name) == versions[-1]]  # `5`, or `00000005`
    return max(folders, default=base / str(versions[-1]))  # TF Serving's pick of duplicates
