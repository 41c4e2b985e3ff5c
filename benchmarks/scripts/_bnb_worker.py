"""bitsandbytes' ``Adam8bit`` on the CPU, in a worker process of its own interpreter.

bitsandbytes (and torch) are benchmark peers, never dependencies of nbadam:
they may live in another environment (``--bnb-python PATH``), and even where
they import here, a process of their own keeps torch's OpenMP runtime out of
the process that times nbadam.  The worker is this file run as a script; it
imports NumPy, torch and bitsandbytes only (not nbadam) and answers one JSON
request per line on stdin with one JSON line on stdout:

* ``{"op": "setup", "n", "seed", "lr", "betas", "eps", "threads"}``: a float32
  parameter and gradient of ``n`` elements, drawn as
  :func:`benchmarks.scripts._peers.make_vectors` draws them, an ``Adam8bit``
  over them (``min_8bit_size=0``: 8-bit state at every size) and two warm-up
  steps;
* ``{"op": "time", "number"}``: ``number`` steps, timed in the worker
  (``perf_counter`` around the loop, as :func:`~._peers.seconds_per_call`
  times in-process peers); the reply is ``{"seconds": per step}``;
* ``{"op": "release"}``: drop the vectors and the optimizer;
* ``{"op": "quadratic", ...}``: :func:`.compact_quality.run_bitsandbytes` on the
  noisy quadratic of :mod:`.compact_quality`, the final point saved to ``out``
  (``.npy``).

Between requests the worker waits on a blocking read, so it takes no CPU time
from the peers timed in the parent.  :class:`Worker` starts and talks to the
process; :class:`Adam8bitPeer` is a step peer in the sense of
:mod:`._peers` (``name``, ``step``, ``sync``, ``setup``, ``close``) plus
``seconds_per_call(number)``, which :func:`._peers.interleaved` uses to time
it in the same rounds as the in-process peers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "bnb_adam8bit"


# -- the worker ----------------------------------------------------------------------------
def serve() -> None:
    """Answer requests on stdin until it closes (the worker's main)."""
    # Replies go to a copy of stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def reply(**fields: Any) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    try:
        import bitsandbytes as bnb
        import torch
    except Exception as exc:  # noqa: BLE001 - any failure to import means no peer
        reply(error=f"{type(exc).__name__}: {exc}")
        return
    reply(versions=f"torch {torch.__version__}, bitsandbytes {bnb.__version__}")
    held: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "setup":
                held.clear()
                held.update(_setup(torch, bnb, **request))
                reply(ok=True)
            elif op == "time":
                step = held["optimizer"].step
                number = int(request["number"])
                begin = time.perf_counter()
                for _ in range(number):
                    step()
                reply(seconds=(time.perf_counter() - begin) / number)
            elif op == "release":
                held.clear()
                reply(ok=True)
            elif op == "quadratic":
                quality = _sibling("compact_quality")
                h, c, x0 = quality.problem(request["n"], request["seed"])
                grad = quality.gradients(h, c, request["noise"], request["seed"])
                x = quality.run_bitsandbytes(x0, grad, request["steps"], request["lr"],
                                             tuple(request["betas"]), request["eps"])
                np.save(request["out"], x)
                reply(ok=True)
            else:
                reply(error=f"unknown op {op!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            reply(error=f"{type(exc).__name__}: {exc}")


def _setup(torch, bnb, n: int, seed: int = 0, lr: float = 1e-3,
           betas=(0.9, 0.999), eps: float = 1e-8, threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(int(threads))
    rng = np.random.default_rng(seed)           # as _peers.make_vectors draws them
    params, grad = (rng.standard_normal(n, dtype=np.float32) for _ in range(2))
    param = torch.nn.Parameter(torch.from_numpy(params))
    param.grad = torch.from_numpy(grad)
    optimizer = bnb.optim.Adam8bit([param], lr=lr, betas=tuple(betas), eps=eps,
                                   min_8bit_size=0)
    optimizer.step()
    optimizer.step()
    return {"param": param, "optimizer": optimizer, "numpy": (params, grad)}


def _sibling(name: str):
    """The script ``name`` beside this file, imported by path (the worker has no package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the parent's side -----------------------------------------------------------------------
def default_python(option: str | None) -> str | None:
    """``option``, else this interpreter where torch and bitsandbytes are installed, else None."""
    if option:
        return option
    if importlib.util.find_spec("torch") and importlib.util.find_spec("bitsandbytes"):
        return sys.executable
    return None


class Worker:
    """The worker process, or (``process`` None) ``reason``: why there is none."""

    def __init__(self, python: str | None):
        self.process, self.versions, self.reason = None, "", ""
        if python is None:
            self.reason = ("torch and bitsandbytes are not installed in this interpreter and "
                           "--bnb-python was not given")
            return
        try:
            self.process = subprocess.Popen([python, os.path.abspath(__file__)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True)
            first = json.loads(self.process.stdout.readline())
        except (OSError, ValueError) as exc:
            self.reason = f"the bitsandbytes worker did not start ({exc})"
            self.close()
            return
        if "versions" not in first:
            self.reason = f"bitsandbytes does not import in {python} ({first.get('error')})"
            self.close()
            return
        self.versions = first["versions"]

    def __bool__(self) -> bool:
        return self.process is not None

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request, return its reply; raise RuntimeError on the worker's error."""
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bitsandbytes worker exited (status {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"bitsandbytes worker: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
            self.process = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Adam8bitPeer:
    """``Adam8bit.step`` in ``worker`` over ``n`` elements (see :func:`._peers.interleaved`)."""

    name = NAME
    device = "cpu"

    def __init__(self, worker: Worker, n: int, seed: int = 0, lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = 1e-8, threads: int | None = None):
        self.worker = worker
        worker.request("setup", n=n, seed=seed, lr=lr, betas=list(betas), eps=eps,
                       threads=threads)

    def setup(self) -> None:
        """Nothing: the worker took its warm-up steps in ``setup``."""

    def seconds_per_call(self, number: int) -> float:
        """Seconds per step over ``number`` steps, timed in the worker."""
        return float(self.worker.request("time", number=number)["seconds"])

    def step(self) -> None:
        self.seconds_per_call(1)

    def sync(self) -> None:
        """The worker's steps are done when it replies."""

    def close(self) -> None:
        if getattr(self, "worker", None):
            self.worker.request("release")
        self.__dict__.clear()


if __name__ == "__main__":
    serve()
