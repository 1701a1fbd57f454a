"""How the gRPC server listens: TF Serving's `--grpc_channel_arguments` and
`--grpc_socket_path`, checked before any model loads.

`--grpc_channel_arguments` is read as TF Serving's `server.cc` reads it: entries split on `,`,
each `key=value`; a value that reads as a 32-bit integer (`absl::SimpleAtoi`: spaces around
and a sign allowed) is passed as an integer, any other as a string, and every entry goes to
the server (gRPC ignores keys it does not know). An entry without `=`, with more than one or
with an empty key is refused (TF Serving reads past the end of its list or keeps only the
text up to the second `=`). A later entry overrides an earlier one and the server's own
options (`grpc.max_receive_message_length` ... from `--max_request_bytes`), as TF Serving's
test harness expects ("gRPC typically respects the last occurrence").

`--grpc_socket_path` serves gRPC on a Unix domain socket as well as the port (or alone, with
`--port 0`), as TF Serving does: `unix:PATH`, relative to the working folder or absolute. A
socket file left by a server that stopped is replaced, as gRPC does; a path whose folder is
missing, that names another kind of file, or that is too long for a socket is refused here,
before gRPC would log its own error.

Imports nothing heavy: the command line checks these before TensorFlow loads.
"""

from __future__ import annotations

import os
import re
import socket
import stat

_INT32 = re.compile(r"\s*[+-]?\d+\s*")
# sockaddr_un.sun_path holds 108 bytes on Linux, the last one the terminating zero.
MAX_SOCKET_PATH_BYTES = 107


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`key=value,...` as `[(key, value)]`, integers as `int` (TF Serving's `server.cc`).

    Args:
        text: the flag's value; empty for none.

    Returns:
        The arguments in order (repeated keys kept: see `server_options`).

    Raises:
        ValueError: one line naming the entry that cannot be read.
    """
    if not text:
        return []
    arguments = []
    for entry in text.split(","):
        parts = entry.split("=")
        if len(parts) != 2 or not parts[0]:
            if len(parts) == 1:
                why = "is empty" if not entry else "has no '='"
            else:
                why = "has more than one '='" if len(parts) > 2 else "has no key"
            raise ValueError(
                f"--grpc_channel_arguments {text!r}: entry {entry!r} {why}; "
                "give KEY=VALUE entries separated by commas, e.g. grpc.max_connection_age_ms=2000"
            )
        key, value = parts
        if _INT32.fullmatch(value) and -(2**31) <= int(value) < 2**31:
            arguments.append((key, int(value)))
        else:
            arguments.append((key, value))
    return arguments


def server_options(defaults, arguments) -> list[tuple[str, int | str]]:
    """The gRPC server's options: `defaults`, then `arguments`; of repeated keys the last wins.

    gRPC's Python server takes the first of repeated keys, so they are merged here.
    """
    merged = dict(defaults)
    merged.update(arguments)
    return list(merged.items())


def check_socket_path(path: str) -> None:
    """Whether gRPC can listen on `path`, found out without gRPC (which logs its own errors).

    Raises:
        ValueError: one line naming the flag, the path and why not.
    """

    def refuse(why: str) -> ValueError:
        return ValueError(f"--grpc_socket_path {path}: {why}")

    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise refuse(f"longer than a Unix socket path may be ({MAX_SOCKET_PATH_BYTES} bytes)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise refuse(f"its folder {folder} does not exist")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISSOCK(mode):
        raise refuse("exists and is not a socket; remove it or give another path")
    if mode is not None:  # a socket: gRPC replaces it, if the folder lets it
        if not os.access(folder, os.W_OK | os.X_OK):
            raise refuse(f"cannot replace the socket there (no write access to {folder})")
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.bind(path)
        except OSError as error:
            raise refuse(f"cannot listen there ({error.strerror or error})") from None
    os.unlink(path)
