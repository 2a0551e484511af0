"""The real `transformers serve` (backend-pytorch's server mode) on the tiny
model: started as the plan starts it, on a free local port, and asked for a
streamed chat completion with usage. The server's whole process group is
killed afterwards, whatever happens."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, require

torch = require("torch")
require("transformers")
require("fastapi")
require("uvicorn")

# As backend-pytorch's server plan runs it (SERVE_MODULE in src/lib.rs).
SERVE = [sys.executable, "-m", "transformers.cli.transformers", "serve"]


def test_the_plan_runs_the_same_module():
    source = (REPO / "plugins" / "backend-pytorch" / "src" / "lib.rs").read_text()
    assert f'pub const SERVE_MODULE: &str = "{SERVE[2]}";' in source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def server(tiny_model, tmp_path):
    port = free_port()
    log_path = tmp_path / "engine.log"
    log = open(log_path, "w")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    argv = SERVE + [tiny_model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "auto"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log_path.read_text()}")
            try:
                if get(port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not healthy in 180 s:\n{log_path.read_text()}")
            time.sleep(0.25)
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def stream_chat(port, body):
    """POST a streaming chat completion; the parsed `data:` chunks in order."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        chunks = []
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            chunks.append(json.loads(data))
        return chunks
    finally:
        conn.close()


def test_health_and_models(server, tiny_model):
    assert get(server, "/health") == (200, b'{"status":"ok"}')
    status, body = get(server, "/v1/models")
    assert status == 200
    assert tiny_model in [m["id"] for m in json.loads(body)["data"]]


def test_streamed_chat_completion_reports_usage(server, tiny_model, tiny_hf):
    tokenizer, model = tiny_hf
    messages = [{"role": "user", "content": "hello there"}]
    max_tokens = 24
    chunks = stream_chat(
        server,
        {
            "model": tiny_model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    content_chunks = [c for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content")]
    assert content_chunks, chunks
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1, chunks

    # What the model generates for this chat, greedily, counted up to and
    # including the first end-of-sequence token.
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = list(ids["input_ids"])
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)
    new = out[0, len(ids) :].tolist()
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    n = next((i + 1 for i, t in enumerate(new) if t in eos), len(new))

    assert usage[0]["completion_tokens"] == n, (usage, new)
    assert usage[0]["prompt_tokens"] == len(ids)
    assert text == tokenizer.decode(new[:n], skip_special_tokens=True)


def stream(port, path, body):
    """POST a streaming request to `path`; the parsed `data:` chunks in order."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        chunks = []
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data:"):
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                chunks.append(json.loads(data))
        return chunks
    finally:
        conn.close()


def test_offline_worker_and_server_agree_on_output_tokens_with_greedy_decoding(server, tiny_model, tmp_path):
    """Issue 7's must-show: the same prompts through the PyTorch worker (offline)
    and through `transformers serve` (server), with the decoding llem sends to
    both (temperature 0, top_p 1, an explicit max_tokens), produce the same
    output-token counts, prompt by prompt, on both APIs."""
    from test_pytorch_worker import pytorch_worker, start
    from worker_driver import generate

    max_tokens = 24
    texts = ["Hello there", "Why is the sky blue?", "Count to five", "Write a poem", "What is energy?",
             "Once upon a time", "def add(a, b):"]
    chats = [[{"role": "user", "content": t}] for t in texts]
    decoding = {"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens}

    def usage(chunks):
        found = [c["usage"]["completion_tokens"] for c in chunks if c.get("usage")]
        assert len(found) == 1, chunks
        return found[0]

    served = {}
    for i, text in enumerate(texts):
        body = {"model": tiny_model, "prompt": text, "stream": True, "stream_options": {"include_usage": True}}
        served[f"t{i}"] = usage(stream(server, "/v1/completions", {**body, **decoding}))
    for i, messages in enumerate(chats):
        body = {"model": tiny_model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        served[f"c{i}"] = usage(stream(server, "/v1/chat/completions", {**body, **decoding}))

    worker = pytorch_worker(tmp_path)
    try:
        start(worker, tiny_model)
        worker.send(*(generate(f"t{i}", max_tokens, prompt=t) for i, t in enumerate(texts)))
        worker.send(*(generate(f"c{i}", max_tokens, messages=m) for i, m in enumerate(chats)))
        offline = {e["id"]: e["output_tokens"] for e in worker.until_done(list(served)) if e["type"] == "done"}
    finally:
        worker.close()

    assert offline == served
    # Both ways a request ends are exercised: at end of sequence and at max_tokens.
    counts = list(served.values())
    assert any(n < max_tokens for n in counts) and any(n == max_tokens for n in counts), served
