"""The latent explorer's URLs, answered by the REST server outside TF Serving's `/v1/` API.

* `GET /` (or `/index.html`) -> `static/index.html`
* `GET /static/FILE` -> a file of `static/` (plain names only, so no path reaches elsewhere)
* `GET /explorer/models.json` -> `{"models": [...]}`, the served model names (TF Serving's
  API cannot list them)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}


def _static_files() -> dict:
    """The explorer's files by plain name (no sub-folders, so no path tricks reach the disk)."""
    if not STATIC_DIR.is_dir():
        return {}
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in STATIC_TYPES}


def explorer_response(
    path: str, model_names: Callable[[], list[str]]
) -> tuple[str, bytes, dict[str, str]] | None:
    """The answer to `GET path` when it is one of the explorer's URLs.

    Args:
        path: the URL path, without query string.
        model_names: returns the names of the served models (called for the model list only).

    Returns:
        `(content type, body, extra headers)` for a 200 answer, or `None` when `path` is not
        the explorer's.
    """
    if path == "/explorer/models.json":
        return "application/json", json.dumps({"models": sorted(model_names())}).encode(), {}
    name = "index.html" if path in ("/", "/index.html") else None
    if path.startswith("/static/"):
        name = path[len("/static/") :]
    file = _static_files().get(name) if name else None
    if file is None:
        return None
    return STATIC_TYPES[file.suffix], file.read_bytes(), {"Cache-Control": "no-cache"}
