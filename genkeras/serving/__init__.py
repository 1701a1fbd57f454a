"""Serving: a TF-Serving-compatible local server (REST + gRPC) and a client.

`genkeras.serving.Client` is imported lazily, so `import genkeras.serving` stays light.
"""

from __future__ import annotations


def __getattr__(name):
    if name == "Client":
        from genkeras.serving.client import Client

        return Client
    raise AttributeError(name)


__all__ = ["Client"]
