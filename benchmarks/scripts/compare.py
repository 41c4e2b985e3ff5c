"""nbadam's Adam step against NumPy, torch and the memory roofline, in one run.

For each size, every peer gets its own vectors and is warmed up; then
``--repeat`` rounds each time every peer once, in a fresh random order each
round, so that noise from other processes hits all peers alike.  One sample
is as many steps as fill ``--min-time`` seconds; the tables report the
median over rounds and the interquartile range.

CPU peers: ``nbadam.Adam.step``; Adam in NumPy ufuncs (in place, ``out=``);
``torch.optim.Adam`` with ``fused=True`` and with ``foreach=True`` when torch
is installed, with as many threads as Numba uses; the ``same_traffic``
kernel, which moves Adam's 28 bytes per float32 element and computes
nothing (the memory roofline).  GPU peers, when Numba sees a CUDA GPU:
nbadam's ``device="cuda"`` step, torch's CUDA fused Adam, and a
device-to-device copy of the same number of bytes.

Every rule of the registry (``nbadam.rules.names()``, or ``--rules``) then
gets a table of its own: its public step timed in rounds against the same
yardstick (the roofline kernel; on the GPU, the copy), the bytes it moves
per element (``_peers.step_bytes``: the gradient read, the parameters and
each state array read and written) and the share of the yardstick's
bandwidth it reaches, from paired rounds.

Writes ``compare_cpu.md`` and ``compare_cpu.png`` (and ``compare_gpu.*``
with a GPU; ``--no-cpu`` for the GPU table alone) to ``--out`` and prints
the markdown.

Usage::

    python -m benchmarks.scripts.compare [--sizes 1e3 1e4 ...] [--repeat 15]
                                         [--dtype float32] [--out docs/performance]
                                         [--rules adam lion ... | --rules none]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

from . import _peers

SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 50_000_000]
#: Targets: nbadam / torch fused at most this at every n, and nbadam /
#: roofline at most ROOFLINE_TARGET for n >= ROOFLINE_FROM.
TORCH_TARGET = 1.0
ROOFLINE_TARGET = 1.10
ROOFLINE_FROM = 10_000_000


def _size(text: str) -> int:
    value = float(text)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"a size is a positive whole number, got {text!r}")
    return int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scripts.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_size, nargs="+", default=SIZES,
                        help="vector lengths (1e6 allowed); default: %(default)s")
    parser.add_argument("--repeat", type=int, default=15,
                        help="rounds per size; medians are over rounds (default %(default)s)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds one sample lasts at least (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/performance"),
                        help="folder for compare_cpu.md/.png (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for Numba and torch (default: Numba's default)")
    parser.add_argument("--no-torch", action="store_true", help="leave the torch peers out")
    parser.add_argument("--no-gpu", action="store_true", help="leave the GPU table out")
    parser.add_argument("--no-cpu", action="store_true",
                        help="leave the CPU table out (GPU table only)")
    parser.add_argument("--groups-sizes", type=_size, nargs="*", default=[1_000_000],
                        metavar="N", help="sizes of the table of what parameter groups, "
                        "clip_grad_norm and ema cost against the plain float32 Adam step "
                        "(benchmarks.scripts.groups_cost; none to leave it out)")
    parser.add_argument("--compact-sizes", type=_size, nargs="*",
                        default=[1_000_000, 10_000_000, 50_000_000], metavar="N",
                        help="sizes of the table of Adam's step with bfloat16 and 8-bit "
                        "moments against float32 ones (benchmarks.scripts.compact_state; "
                        "none to leave it out)")
    parser.add_argument("--rules", nargs="+", default=None, metavar="RULE",
                        help="rules in the table of every rule (default: all of "
                             "nbadam.rules.names()); 'none' leaves that table out")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    from nbadam import rules
    if args.rules is None:
        args.rules = list(rules.names())
    elif args.rules == ["none"]:
        args.rules = []
    else:
        try:
            args.rules = list(dict.fromkeys(rules.get(name).name for name in args.rules))
        except ValueError as exc:
            parser.error(f"--rules: {exc}")
    return args


# -- machine description --------------------------------------------------------

def _cpu_model() -> str:
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    model = fields.get("model name", platform.machine())
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    simd = [f for f in ("avx2", "fma", "avx512f") if f in fields.get("flags", "").split()]
    if simd:
        model += ", " + " ".join(simd)
    return model


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kib = int(meminfo.readline().split()[1])
        return f"{kib / 2 ** 20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "? GiB"


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f} (1, 5, 15 min)".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def machine_lines(threads: int, layer: str, wait_policy: str, torch) -> list[str]:
    import numba
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"- CPU: {_cpu_model()}; {os.cpu_count()} logical cores, {usable} usable; "
        f"{_memory_gib()} RAM",
        f"- {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- NumPy {np.__version__}, Numba {numba.__version__} (threading layer `{layer}`, "
        f"{threads} threads, `OMP_WAIT_POLICY={wait_policy}`)",
    ]
    if torch is not None:
        lines.append(f"- torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)")
    else:
        lines.append("- torch: not measured (not installed, or `--no-torch`)")
    return lines


def _gpu_name() -> str:
    import numba
    from numba import cuda

    if numba.config.ENABLE_CUDASIM:
        return "Numba's CUDA simulator (timings meaningless)"
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


# -- measurement ------------------------------------------------------------------

def measure(peers, n: int, dtype: np.dtype, repeat: int,
            min_time: float) -> dict[str, dict[str, float]]:
    """Median and IQR seconds per step of each peer, plus ns/element and GB/s."""
    adam_bytes = _peers.step_bytes("adam", dtype, n)
    for peer in peers:
        peer.setup()
    samples = _peers.interleaved(peers, repeat, min_time)
    stats = {}
    for peer in peers:
        q25, median, q75 = np.percentile(samples[peer.name], [25, 50, 75])
        stats[peer.name] = {
            "median": float(median),
            "iqr": float(q75 - q25),
            "ns_per_element": float(median) / n * 1e9,
            # Effective bandwidth: the bytes Adam must move (28 per float32 element).
            "gbps": adam_bytes / float(median) / 1e9,
            "samples": samples[peer.name],
        }
    return stats


def run_sizes(make_peers, sizes, dtype, repeat, min_time, log=print):
    """``{n: stats}`` for each size; peers are built and freed one size at a time."""
    results = {}
    for n in sizes:
        peers = make_peers(n, dtype)
        try:
            results[n] = measure(peers, n, dtype, repeat, min_time)
        finally:
            _peers.release(peers)
        summary = ", ".join(f"{name} {s['median'] * 1e6:.1f} us"
                            for name, s in results[n].items())
        log(f"n={n:>11,}: {summary}", file=sys.stderr, flush=True)
    return results


def run_rules(names, sizes, dtype, repeat, min_time, device="cpu", log=print):
    """``{n: {rule: stats}}``: each rule's step timed in rounds against its yardstick.

    One rule at a time (with its own yardstick), so that memory holds two
    peers, not every rule's state.  ``share`` holds, per round, the rule's
    effective bandwidth (its bytes over its time) over the yardstick's.
    """
    yardstick = "roofline" if device == "cpu" else "cuda_copy"
    results = {}
    for n in sizes:
        results[n] = {}
        for name in names:
            peers = _peers.rule_peers(n, dtype, name, device)
            try:
                for peer in peers:
                    peer.setup()
                samples = _peers.interleaved(peers, repeat, min_time)
            finally:
                _peers.release(peers)
            step_bytes = _peers.step_bytes(name, dtype, n)
            yard_bytes = _peers.update_bytes(_peers.ROOFLINE, dtype, n)
            median = float(np.median(samples[name]))
            results[n][name] = {
                "median": median,
                "state_arrays": len(_peers.rule_update(name).state),
                "bytes_per_element": _peers.step_bytes(name, dtype),
                "gbps": step_bytes / median / 1e9,
                "share": (step_bytes / samples[name]) / (yard_bytes / samples[yardstick]),
            }
        summary = ", ".join(f"{name} {stats['median'] * 1e6:.1f} us"
                            for name, stats in results[n].items())
        log(f"n={n:>11,} ({device}): {summary}", file=sys.stderr, flush=True)
    return results


# -- reporting --------------------------------------------------------------------

def _us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:,.0f}" if us >= 100 else f"{us:.3g}" if us >= 1 else f"{us:.2g}"


def _ratios(results, n, a, b) -> np.ndarray:
    """Per-round time ratios ``a / b`` (empty when a peer is missing).

    The two samples of a round were taken moments apart, so their ratio is
    steadier than a ratio of medians when the machine's load drifts.
    """
    if a not in results[n] or b not in results[n]:
        return np.array([])
    return results[n][a]["samples"] / results[n][b]["samples"]


def _ratio_cell(results, n, a, b) -> str:
    ratios = _ratios(results, n, a, b)
    if not ratios.size:
        return "-"
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return f"{median:.2f} ({q25:.2f}-{q75:.2f})"


def summary_table(results, columns, ratios) -> list[str]:
    header = ["n"] + [f"{name} (us)" for name in columns] + [label for label, _, _ in ratios]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for n, stats in results.items():
        cells = [f"{n:,}"]
        cells += [_us(stats[name]["median"]) if name in stats else "-" for name in columns]
        cells += [_ratio_cell(results, n, a, b) for _, a, b in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def detail_table(results) -> list[str]:
    lines = ["| n | peer | median (us) | IQR (us) | ns / element | effective GB/s |",
             "|---:|:---|---:|---:|---:|---:|"]
    for n, stats in results.items():
        for name, s in stats.items():
            lines.append(f"| {n:,} | {name} | {_us(s['median'])} | {_us(s['iqr'])} | "
                         f"{s['ns_per_element']:.3g} | {s['gbps']:.3g} |")
    return lines


def _verdict(results, pairs, target) -> str:
    """'met', or the sizes whose median ratio exceeds ``target`` and by how much."""
    missed = []
    for n, (a, b) in pairs.items():
        ratios = _ratios(results, n, a, b)
        q25, median = np.percentile(ratios, [25, 50])
        if median > target:
            noise = ", within the round-to-round spread" if q25 <= target else ""
            missed.append(f"n={n:,} ({median:.2f}, quartiles from {q25:.2f}{noise})")
    return "met" if not missed else "missed at " + "; ".join(missed)


def target_lines(results) -> list[str]:
    lines = []
    torch_pairs = {n: ("nbadam", "torch_fused") for n, stats in results.items()
                   if "torch_fused" in stats}
    if torch_pairs:
        lines.append(f"- nbadam no slower than torch fused at every n: "
                     f"{_verdict(results, torch_pairs, TORCH_TARGET)}")
    roof_pairs = {n: ("nbadam", "roofline") for n in results if n >= ROOFLINE_FROM}
    if roof_pairs:
        lines.append(f"- nbadam within {ROOFLINE_TARGET - 1:.0%} of the roofline at "
                     f"n >= {ROOFLINE_FROM:,}: "
                     f"{_verdict(results, roof_pairs, ROOFLINE_TARGET)}")
    return lines


def plot(results, path: Path, title: str) -> bool:
    """Draw time per element against n, log-log; False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no {path.name} (pip install 'nbadam[plot]')",
              file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    sizes = list(results)
    names = list(dict.fromkeys(name for stats in results.values() for name in stats))
    for name in names:
        ns = [n for n in sizes if name in results[n]]
        per_element = np.array([results[n][name]["ns_per_element"] for n in ns])
        spread = np.array([results[n][name]["iqr"] / n * 1e9 / 2 for n in ns])
        style = {"linestyle": "--", "color": "black"} if name in ("roofline", "cuda_copy") else {}
        ax.errorbar(ns, per_element, yerr=spread, marker="o", markersize=4, capsize=2,
                    label=name, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n (elements)")
    ax.set_ylabel("time per element and step (ns)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def rules_section(results, yardstick: str) -> list[str]:
    """The table of every rule: bytes per element, time, GB/s, share of the yardstick's."""
    if not results:
        return []
    lines = ["", "## Every rule", "",
             f"Each rule's public step, timed in rounds against the {yardstick} peer "
             "(which moves Adam's 7 passes and computes nothing).  Bytes per element count "
             "the gradient read and the parameters and each state array read and written.  "
             f"The last column is the rule's bytes per second over the {yardstick}'s, the "
             "median of the per-round ratios with its quartiles: 1.00 is a step as "
             "memory-bound as the yardstick.", "",
             "| n | rule | state arrays | bytes / element | median (us) | GB/s | "
             f"bandwidth / {yardstick} |",
             "|---:|:---|---:|---:|---:|---:|---:|"]
    for n, by_rule in results.items():
        for name, s in by_rule.items():
            q25, median, q75 = np.percentile(s["share"], [25, 50, 75])
            lines.append(f"| {n:,} | {name} | {s['state_arrays']} | {s['bytes_per_element']} "
                         f"| {_us(s['median'])} | {s['gbps']:.3g} | "
                         f"{median:.2f} ({q25:.2f}-{q75:.2f}) |")
    return lines


def groups_section(sizes, repeat: int, min_time: float) -> list[str]:
    """What groups, clipping and the average cost per float32 Adam step, as ratios."""
    from . import groups_cost
    return ["", "## Groups, gradient clipping, parameter average (float32 Adam)", "",
            "Each round times every variant once, in a new random order: 2 and 8 equal "
            "groups (one launch each), `clip_grad_norm` active on every step, `ema`; "
            "ratios are medians of the per-round ratios to the plain step.", "",
            *groups_cost.table(sizes, repeat, max(min_time, 1e-3)), ""]


def compact_section(sizes, repeat: int, min_time: float) -> list[str]:
    """Adam's step with bfloat16 and 8-bit moments against float32 ones, and each one's
    roofline (bitsandbytes left out: ``python -m benchmarks.scripts.compact_state`` has it)."""
    from . import compact_state
    return ["", "## Compact optimizer state (float32 Adam, `state_precision`)", "",
            "Each round times the float32-state step (28 bytes per element), the "
            "bfloat16-state step (20 bytes), the 8-bit-state step (16 bytes and a "
            "float32 scale per moment and 256 elements, read and written) and the roofline "
            "kernel once; a format's roofline is its bytes at the roofline kernel's "
            "bandwidth in that round.", "",
            *compact_state.table(sizes, repeat, max(min_time, 1e-3)), ""]


def report(results, title, header, columns, ratios, extra) -> str:
    present = {name for stats in results.values() for name in stats}
    ratios = [r for r in ratios if r[1] in present and r[2] in present]
    lines = [f"# {title}", ""] + header + ["", "## Summary", "",
                                         "Times are medians over rounds.  Ratios are medians of "
                                         "the per-round ratios (paired samples), with their "
                                         "quartiles in parentheses.", ""]
    lines += summary_table(results, columns, ratios) + [""] + extra
    lines += ["", "## Details", "", "Effective GB/s counts the bytes Adam must move "
              "(7 passes: read θ, g, m, v, write θ, m, v); the NumPy peer moves more.", ""]
    lines += detail_table(results)
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    dtype = np.dtype(args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.scripts.compare " + " ".join(
        argv if argv is not None else sys.argv[1:])
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")

    # Each library gets the thread set-up it has in a program of its own:
    # nbadam makes its first parallel launch before torch is imported (so
    # Numba picks its threading layer, and OpenMP its wait policy, as without
    # torch), then the environment is restored for torch's own OpenMP runtime.
    import numba

    from nbadam import _config
    user_policy = os.environ.get("OMP_WAIT_POLICY")
    warm = _peers.NbadamStep(max(_config.PARALLEL_MIN_SIZE, 1), dtype)
    warm.setup()
    _peers.release([warm])
    if args.threads is not None:
        # After the first launch: setting it before would start Numba's thread
        # pool ahead of nbadam's choice of threading layer.
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    layer = numba.threading_layer()
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    if user_policy is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    torch = None if args.no_torch else _peers.torch_module()
    threads = _peers.match_torch_threads() if torch is not None else numba.get_num_threads()

    method = [
        f"Measured {date} with `{command.strip()}`: {args.dtype}, {args.repeat} rounds per "
        f"size, each round timing every peer once, in a new random order; "
        f"one sample is as many steps as fill {args.min_time * 1e3:g} ms.",
        "",
    ]
    results = {}
    load_before = _load()
    if not args.no_cpu:
        cpu = run_sizes(lambda n, d: _peers.cpu_peers(n, d, torch=torch is not None),
                        args.sizes, dtype, args.repeat, args.min_time)
        columns = [c for c in ("nbadam", "torch_fused", "torch_foreach", "numpy", "roofline")
                   if any(c in stats for stats in cpu.values())]
        ratios = [("nbadam / roofline", "nbadam", "roofline"),
                  ("numpy / nbadam", "numpy", "nbadam")]
        if torch is not None:
            ratios.insert(0, ("nbadam / torch fused", "nbadam", "torch_fused"))
        by_rule = run_rules(args.rules, args.sizes, dtype, args.repeat, args.min_time)
        text = report(cpu, f"Adam step on the CPU ({args.dtype})",
                      method + machine_lines(threads, layer, wait_policy, torch)
                      + [f"- {load_before} before, {_load()} after"], columns, ratios,
                      ["Targets:", ""] + target_lines(cpu))
        text += "\n".join(rules_section(by_rule, "roofline")) + ("\n" if by_rule else "")
        if args.groups_sizes:
            text += "\n".join(groups_section(args.groups_sizes, args.repeat, args.min_time))
        if args.compact_sizes:
            text += "\n".join(compact_section(args.compact_sizes, args.repeat, args.min_time))
        (args.out / "compare_cpu.md").write_text(text, encoding="utf-8")
        plot(cpu, args.out / "compare_cpu.png", f"Adam step, CPU, {args.dtype}")
        print(text)
        results["cpu"] = cpu
        if args.rules:
            results["rules_cpu"] = by_rule

    if not args.no_gpu and _peers.cuda_available():
        gpu = run_sizes(lambda n, d: _peers.gpu_peers(n, d, torch=torch is not None),
                        args.sizes, dtype, args.repeat, args.min_time)
        columns = [c for c in ("nbadam_cuda", "torch_cuda_fused", "cuda_copy")
                   if any(c in stats for stats in gpu.values())]
        ratios = [("nbadam / torch fused", "nbadam_cuda", "torch_cuda_fused"),
                  ("nbadam / copy", "nbadam_cuda", "cuda_copy")]
        by_rule = run_rules(args.rules, args.sizes, dtype, args.repeat, args.min_time,
                            device="cuda")
        device = _gpu_name()
        text = report(gpu, f"Adam step on the GPU ({args.dtype})",
                      method + [f"- GPU: {device}"]
                      + machine_lines(threads, layer, wait_policy, torch),
                      columns, ratios, [])
        text += "\n".join(rules_section(by_rule, "cuda_copy")) + ("\n" if by_rule else "")
        (args.out / "compare_gpu.md").write_text(text, encoding="utf-8")
        plot(gpu, args.out / "compare_gpu.png", f"Adam step, GPU, {args.dtype}")
        print(text)
        results["gpu"] = gpu
        if args.rules:
            results["rules_gpu"] = by_rule
    return results


if __name__ == "__main__":
    main()
