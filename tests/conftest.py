"""Shared fixtures: real TFDS data (offline through $GENKERAS_MANUAL_DIR) and fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory):
    """Prepared TFDS data shared by the whole session.

    $GENKERAS_DATA_DIR is reused when set (a warm cache); otherwise TFDS prepares into a
    temporary folder from the archives in $GENKERAS_MANUAL_DIR (or downloads them).
    """
    if not os.environ.get("GENKERAS_DATA_DIR"):
        os.environ["GENKERAS_DATA_DIR"] = str(tmp_path_factory.mktemp("tfds"))
    return Path(os.environ["GENKERAS_DATA_DIR"])


def run_python(code: str, *args, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        cwd=env.get("CWD", ROOT) if env else ROOT,
    )


def call_savedmodel_in_fresh_tensorflow(export_path, signature: str, inputs: dict) -> dict:
    """Loads a SavedModel in a new process that imports only tensorflow and numpy, calls one
    signature with `inputs` (name -> numpy array) and returns its outputs as numpy arrays.

    The child fails if genkeras ends up imported, so this proves the export stands on its own,
    as it must under TensorFlow Serving. (TensorFlow itself imports parts of keras; the child
    never does.)
    """
    import numpy as np

    work = Path(export_path).parent / f"call-{signature}-{os.getpid()}"
    work.mkdir(exist_ok=True)
    np.savez(work / "inputs.npz", **inputs)
    result = run_python(
        """
        import sys, numpy as np, tensorflow as tf
        path, signature, work = sys.argv[1:4]
        loaded = tf.saved_model.load(path, tags=["serve"])
        fn = loaded.signatures[signature]
        inputs = dict(np.load(work + "/inputs.npz"))
        outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        assert "genkeras" not in sys.modules, "the export needed genkeras"
        np.savez(work + "/outputs.npz", **{k: v.numpy() for k, v in outputs.items()})
        """,
        export_path,
        signature,
        work,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(work / "outputs.npz"))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())
