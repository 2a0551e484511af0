"""Software versions of an inference engine's Python environment, as one JSON
object on stdout. llem runs this with a server engine's interpreter (before
the engine starts, so nothing it does lands in a measured window) to record
what the offline workers report in their `ready` line.

The function `software_versions` is copied verbatim into every offline worker
(plugins/backend-*/\\*_worker.py); tests/python/test_versions.py checks that
the copies are identical, so the two modes report the same keys.
"""


def software_versions(torch=None):
    """Versions of what runs the model, for the run's environment record.

    Package versions come from their metadata (nothing is imported for them);
    `cuda` (the CUDA version torch was built with) and `devices` (the CUDA
    devices torch sees, by name) come from `torch` when it is passed in.
    Keys: python, torch, transformers, vllm, tensorrt_llm (whichever are
    installed), cuda, devices. Never raises: a version that cannot be read is
    left out.
    """
    import platform

    out = {"python": platform.python_version()}
    try:
        import importlib.metadata as metadata
    except ImportError:  # Python < 3.8
        return out
    for key, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("vllm", "vllm"),
        ("tensorrt_llm", "tensorrt_llm"),
    ):
        try:
            out[key] = metadata.version(dist)
        except Exception:  # noqa: BLE001 - not installed, or broken metadata
            pass
    if torch is not None:
        try:
            cuda = getattr(getattr(torch, "version", None), "cuda", None)
            if cuda:
                out["cuda"] = str(cuda)
            if torch.cuda.is_available():
                out["devices"] = [str(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - informative only
            pass
    return out


if __name__ == "__main__":
    import json
    import sys

    try:
        import torch as _torch
    except Exception:  # noqa: BLE001 - an engine without torch still has versions
        _torch = None
    json.dump(software_versions(_torch), sys.stdout)
    sys.stdout.write("\n")
