"""Driving an offline worker as the kernel does: a subprocess, JSON lines on
stdin/stdout, stderr to a log file; and what every request's events must
look like. Shared by test_worker_conformance.py and test_pytorch_worker.py."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time


def expand(events, started=None):
    """Protocol events with each `tokens` line (one token at its `t_ns` for
    each of its ids) written out as the per-request lines it stands for:
    `first_token` for a request that had none yet, then `token` with n 1 — as
    the kernel reads it (kernel/src/engine/worker.rs). `started`: the ids that
    already had a first token (kept across calls)."""
    started = set() if started is None else started
    out = []
    for e in events:
        if e.get("type") == "tokens":
            for rid in e["ids"]:
                if rid not in started:
                    started.add(rid)
                    out.append({"type": "first_token", "id": rid, "t_ns": e["t_ns"]})
                out.append({"type": "token", "id": rid, "t_ns": e["t_ns"], "n": 1})
            continue
        if e.get("type") == "first_token":
            started.add(e["id"])
        out.append(e)
    return out


class WorkerProcess:
    """A started worker: send lines, read events."""

    def __init__(self, argv, env, cwd):
        self.log_path = cwd / "engine.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=env, cwd=cwd,
        )
        self.raw = []
        self.lines: queue.Queue = queue.Queue()
        self.pending: list = []  # events of a `tokens` line not yet returned
        self.started: set = set()  # ids that had their first token
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def send(self, *messages):
        for m in messages:
            self.proc.stdin.write((m if isinstance(m, str) else json.dumps(m)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout=120):
        """The next event, a `tokens` line expanded per request (`expand`)."""
        while not self.pending:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return None
            self.pending = expand([json.loads(line)], self.started)
        return self.pending.pop(0)

    def start(self, hello):
        """Send `hello` and return `ready`."""
        self.send(hello)
        ready = self.next()
        assert ready is not None and ready["type"] == "ready", f"{ready}\n{self.log_text()}"
        return ready

    def until_done(self, ids, timeout=300):
        """Every event until each of `ids` has a done or an error line."""
        events, open_ids = [], set(ids)
        deadline = time.monotonic() + timeout
        while open_ids:
            event = self.next(timeout=max(1, deadline - time.monotonic()))
            assert event is not None, f"the worker exited early\n{self.log_text()}"
            events.append(event)
            if event["type"] in ("done", "error") and event.get("id") in open_ids:
                open_ids.discard(event["id"])
        return events

    def close(self, timeout=60):
        try:
            if self.proc.poll() is None:
                self.send({"type": "shutdown"})
                self.proc.stdin.close()
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()


def generate(rid, max_tokens, prompt="Once upon a time", messages=None, ignore_eos=False, **decoding):
    """A generate line as the kernel writes it: decoding explicit (greedy by default)."""
    m = {"type": "generate", "id": rid, "max_tokens": max_tokens, "ignore_eos": ignore_eos,
         "temperature": 0.0, "top_p": 1.0, "seed": None, **decoding}
    if messages is not None:
        m["messages"] = messages
    else:
        m["prompt"] = prompt
    return m


def by_id(events):
    """Each request's events but errors, in order."""
    out = {}
    for e in events:
        if e.get("id") is not None and e["type"] != "error":
            out.setdefault(e["id"], []).append(e)
    return out


def check_request_events(events, lo_ns, hi_ns):
    """first_token, then token lines, then done; t_ns non-decreasing and on
    this process's CLOCK_MONOTONIC; the token n add up to output_tokens; done
    at the request's own last token. Returns done."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "first_token" and kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) == {"token"}, kinds
    times = [e["t_ns"] for e in events]
    assert times == sorted(times), times
    assert lo_ns <= times[0] and times[-1] <= hi_ns
    assert events[1]["t_ns"] == events[0]["t_ns"], "the first token's step also gets a token line"
    tokens = [e for e in events if e["type"] == "token"]
    assert all(isinstance(e["n"], int) and e["n"] >= 1 for e in tokens)
    done = events[-1]
    assert sum(e["n"] for e in tokens) == done["output_tokens"]
    assert done["t_ns"] == tokens[-1]["t_ns"], "done carries the request's own last-token time"
    assert isinstance(done["input_tokens"], int) and done["input_tokens"] >= 1
    return done


# In-process workers (the engine's Worker class fed lines directly).


class StepClock:
    """A worker's clock for in-process tests: each reading 1 µs after the last."""

    def __init__(self, start_ns=1_000_000_000):
        self.t = start_ns

    def __call__(self):
        self.t += 1_000
        return self.t


def hello_line(model="tiny-model", options=None, **fields):
    return json.dumps({"type": "hello", "protocol": 1, "model": model, "options": options or {}, **fields})


def generate_line(rid, max_tokens=3, prompt="Hello", ignore_eos=False, **extra):
    """A generate line; decoding only where `extra` sets it (hello's fills the rest)."""
    msg = {"type": "generate", "id": rid, "max_tokens": max_tokens, "ignore_eos": ignore_eos}
    if "messages" in extra:
        msg["messages"] = extra.pop("messages")
    else:
        msg["prompt"] = prompt
    msg.update(extra)
    return json.dumps(msg)


SHUTDOWN_LINE = json.dumps({"type": "shutdown"})
