"""What an inference engine's Python can do, for `llem env`: one JSON object on
stdout. Usage: python doctor_probe.py MODULE [MODULE ...]

Each module is really imported (an installed package that fails to import,
say a vLLM built for another CUDA, is what a run would meet), with its version
or the import error's last line. With torch importable: the CUDA version torch
was built with, whether CUDA is usable, and each visible device's name and
memory. Never raises; a probe that cannot tell leaves the key out.
"""

import json
import platform
import sys

MARKER = "LLEM_DOCTOR "


def check_module(name):
    entry = {"name": name}
    try:
        module = __import__(name)
    except BaseException as exc:  # noqa: BLE001 - any failure is the answer
        text = str(exc).strip().splitlines()
        entry["error"] = "%s: %s" % (type(exc).__name__, text[-1] if text else "")
        return entry, None
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            import importlib.metadata as metadata

            version = metadata.version(name)
        except Exception:  # noqa: BLE001
            version = None
    if version is not None:
        entry["version"] = str(version)
    return entry, module


def cuda_facts(torch):
    out = {"built_with": getattr(getattr(torch, "version", None), "cuda", None)}
    try:
        out["available"] = bool(torch.cuda.is_available())
        devices = []
        if out["available"]:
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                devices.append({"name": str(props.name), "memory_bytes": int(props.total_memory)})
        out["devices"] = devices
    except Exception as exc:  # noqa: BLE001
        out["available"] = False
        out["error"] = str(exc).strip()
    return out


def main(names):
    # Engines print banners when imported: keep them off the answer, which is
    # the one line starting with MARKER (C code may still write to fd 1).
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    report = {"python": platform.python_version(), "executable": sys.executable, "modules": []}
    torch = None
    for name in names:
        entry, module = check_module(name)
        report["modules"].append(entry)
        if name == "torch":
            torch = module
    if torch is None and "torch" not in names:
        _, torch = check_module("torch")
    if torch is not None:
        report["cuda"] = cuda_facts(torch)
    sys.stdout = real_stdout
    sys.stdout.write(MARKER + json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
