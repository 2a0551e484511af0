# ---------------------------------------------------------------------------
# The end of llem's versions probe: kernel/src/engine/versions.rs runs
# plugins/backend-common/worker_protocol.py with this appended (`PROBE`), so a
# server engine's environment record has the same keys, from the same
# `software_versions`, as an offline worker's `ready` line.
"""Software versions of an inference engine's Python environment, as one JSON
object on stdout. llem runs this with a server engine's interpreter before the
engine starts, so nothing it does lands in a measured window."""

if __name__ == "__main__":
    try:
        import torch as _torch
    except Exception:  # noqa: BLE001 - an engine without torch still has versions
        _torch = None
    json.dump(software_versions(_torch), sys.stdout)
    sys.stdout.write("\n")
