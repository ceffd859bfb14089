"""Node kinds and a model provider that exercise each executor effect with real threads, and a
loopback HTTP server that counts what reaches it (requests per path, most at once).

The kinds are registered in a copy of the registry for one test (`use_effect_fakes`):
- `get`: `Call`s `url` (the server) on the I/O pool, optionally with `concurrency:`;
- `get_then_paint`: a `Call` and a model `Invoke` (`together`: in one yield, else one after the
  other), for the exactly-once test under a halved batch;
- `cpu`: `Compute`s the name of the thread it ran on;
- `gil`: `Compute`s a count that holds the GIL (as ripser does) in a picklable function;
- `ticks`: `Call`s one after another (each next one needs the scheduler);
- `ask`: a `Wait` whose poll reads `answers/<key>.txt` beside the tree (the outside world).
"""

from __future__ import annotations

import functools
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from genarun.models.base import Invocation, LoadedModel, ModelSpec, Provider
from genarun.models.catalog import CatalogEntry
from genarun.nodes.base import ExecutionContext, NodeKind
from genarun.nodes.effects import Call, Compute, Invoke, Wait
from genarun.tree.schema import NodeBase
from tests.helpers import PATIENCE


class CountingServer:
    """A real HTTP server on 127.0.0.1 that answers each GET after `delay` seconds with its
    path, and counts requests per path and the most served at once."""

    def __init__(self, delay: float = 0.0, gather: int = 0) -> None:
        self.delay = delay
        # Hold each request until this many are being served at once (or 5 s passed), so the
        # most at once reaches a limit however slowly the machine starts threads.
        self.gather = gather
        self.gathered = threading.Condition()
        self.hits: Counter[str] = Counter()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        # Set by a request to /meet: with `model_started`, proves a call and a model overlap.
        self.request_seen = threading.Event()
        self.model_started = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.hits[self.path] += 1
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                if server.gather:
                    with server.gathered:
                        server.gathered.notify_all()
                        server.gathered.wait_for(lambda: server.active >= server.gather, 5)
                try:
                    status = 200
                    if self.path.startswith("/meet"):
                        server.request_seen.set()
                        status = 200 if server.model_started.wait(PATIENCE) else 504
                    elif server.delay:
                        time.sleep(server.delay)
                finally:
                    # Counted out before the answer goes: once the client has it, its slot is
                    # free and the next request may arrive before this thread runs again (a
                    # decrement after the write saw 9 at once under a limit of 8 under load).
                    with server.lock:
                        server.active -= 1
                body = self.path.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with CountingServer(delay=0.15) as running:
        yield running


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=PATIENCE) as response:
        return response.read().decode()


def _host(url: str) -> str:
    return urllib.request.urlparse(url).netloc


class GetNode(NodeBase):
    url: str = Field(description="The URL to GET.")
    concurrency: int | None = Field(None, description="Calls of this node at once.")


def run_get(ctx: ExecutionContext, node: GetNode) -> Any:
    url = node.url
    return (yield Call(lambda: _get(url), host=_host(url), label=f"GET {url}"))


class GetThenPaintNode(NodeBase):
    url: str = Field(description="The URL to GET.")
    model: Any = Field(description="A text-to-image model.")
    prompt: str = Field(description="The prompt.")
    together: bool = Field(False, description="The call and the model call in one yield.")


def run_get_then_paint(ctx: ExecutionContext, node: GetThenPaintNode) -> Any:
    spec = ctx.model(node.model)
    url = node.url
    call = Call(lambda: _get(url), host=_host(url))
    invoke = Invoke(spec, Invocation("image", node.prompt, ctx.seed, {}))
    if node.together:
        body, image = yield [call, invoke]
    else:
        body = yield call
        image = yield invoke
    return {"body": body, "size": list(image.size)}


class CpuNode(NodeBase):
    fail: bool = Field(False, description="Raise in the CPU work.")


def run_cpu(ctx: ExecutionContext, node: CpuNode) -> Any:
    fail = node.fail

    def work() -> str:
        if fail:
            raise ValueError("the CPU work broke")
        return threading.current_thread().name

    ran_on = yield Compute(work)
    return {"ran_on": ran_on, "scheduler": threading.current_thread().name}


class GilNode(NodeBase):
    size: int = Field(description="How far to count, in C, holding the GIL all the while.")


def _count_holding_the_gil(size: int, started: str) -> dict[str, Any]:
    """Module-level, so a `functools.partial` of it pickles: `sum` over a range is one C call
    that never releases the GIL (as ripser's persistence does). Touches `started` first."""
    import os

    start = time.time()
    Path(started).touch()
    total = sum(range(size))
    return {"total": total, "started": start, "ended": time.time(), "pid": os.getpid()}


def run_gil(ctx: ExecutionContext, node: GilNode) -> Any:
    marker = str(ctx.tree_dir / "counting")
    return (yield Compute(functools.partial(_count_holding_the_gil, node.size, marker)))


class TicksNode(NodeBase):
    count: int = Field(description="Calls made one after another, once `counting` exists.")


def _wait_for(path: str) -> None:
    deadline = time.time() + 60
    while not Path(path).exists() and time.time() < deadline:
        time.sleep(0.005)


def run_ticks(ctx: ExecutionContext, node: TicksNode) -> Any:
    """Once the `gil` node's count started: calls one after another, each next one sent by
    the scheduler thread when the last one is done."""
    yield Call(functools.partial(_wait_for, str(ctx.tree_dir / "counting")))
    times = []
    for _ in range(node.count):
        yield Call(functools.partial(time.sleep, 0.01))
        times.append(time.time())
    return {"times": times}


class AskNode(NodeBase):
    question: str = Field(description="What to ask.")
    poll_every: float = Field(1.0, description="Seconds between polls.")


def run_ask(ctx: ExecutionContext, node: AskNode) -> Any:
    key = f"{ctx.node_id}{''.join(f'-{i}' for i in ctx.path)}"
    answer_file = ctx.tree_dir / "answers" / f"{key}.txt"

    def poll() -> str | None:
        return answer_file.read_text().strip() if answer_file.exists() else None

    answer = yield Wait(key, {"question": node.question}, poll=poll, poll_every=node.poll_every)
    return answer


KINDS = [
    NodeKind("get", GetNode, run_get, "GET a URL (test kind).", "text", cacheable=False),
    NodeKind(
        "get_then_paint",
        GetThenPaintNode,
        run_get_then_paint,
        "GET a URL and paint (test kind).",
        "object",
        model_task="image",
        cacheable=False,
    ),
    NodeKind("cpu", CpuNode, run_cpu, "CPU work (test kind).", "object", cacheable=False),
    NodeKind("gil", GilNode, run_gil, "CPU work holding the GIL.", "object", cacheable=False),
    NodeKind("ticks", TicksNode, run_ticks, "Calls in sequence.", "object", cacheable=False),
    NodeKind("ask", AskNode, run_ask, "Wait for an answer (test kind).", "text", cacheable=False),
]


class MeetingModel(LoadedModel):
    """A model whose call returns only once the server has seen a /meet request, which itself
    returns only once this call has started: both finish only if they run at once."""

    max_batch = 64
    server: CountingServer | None = None

    def run(self, task: str, batch: Any) -> list[Any]:
        from PIL import Image

        assert self.server is not None
        self.server.model_started.set()
        if not self.server.request_seen.wait(PATIENCE):
            raise RuntimeError("the I/O call never ran while the model was busy")
        return [Image.new("RGB", (8, 8)) for _ in batch]


class MeetingProvider(Provider):
    name = "meeting"
    uses_torch = False

    def tasks(self, spec: ModelSpec) -> frozenset[str]:
        return frozenset({"image"})

    def load(self, spec: ModelSpec, device: str) -> LoadedModel:
        return MeetingModel()

    def weights_present(self, spec: ModelSpec) -> bool | None:
        return True


def use_effect_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test kinds (and the fakes of tests/cycle_fakes.py) for one test only."""
    from genarun import plugins
    from tests.cycle_fakes import use_fakes

    use_fakes(monkeypatch)
    reg = plugins.registry()
    for kind in KINDS:
        reg.add_kind(kind)
    reg.add_provider(MeetingProvider())
    reg.add_model(
        CatalogEntry(
            "meeting-t2i", "meeting", "meeting-t2i", frozenset({"image"}), "dummy", "0 B", "meet"
        )
    )


def answer(tree_dir: Path, key: str, text: str) -> None:
    """Answer the `ask` node's wait `key` (as a person would, outside the run)."""
    (tree_dir / "answers").mkdir(exist_ok=True)
    (tree_dir / "answers" / f"{key}.txt").write_text(text)
