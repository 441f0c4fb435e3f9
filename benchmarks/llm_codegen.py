"""How well does a real LLM write the code for specs of the default search space?

For ``--specs`` distinct architectures sampled (seeded) from an encoder's space (``--encoder``,
default ``mlp_conv1d``) on a task's shapes (``--input-shape``, default MNIST-1D's ``40``;
``--classes``, default 10), the code generator named by ``--provider`` is run
through the core pipeline exactly as a search runs it (``generate_validated_code``: extraction,
static validation, the sandboxed probe, the fidelity check against the spec, ``--attempts`` rounds
with the rejection fed back, then the ``template`` fallback). Reported:

- valid on the first try (the first answer builds a network with the right output shape),
- faithful on the first try (it is also the spec's network: layers, sizes, parameter count),
- valid and faithful after repair (the LLM's code was accepted in some round),
- fallback rate, and usable code (LLM or fallback) — the goal is 100%,
- median wall time and completion tokens per spec (rounds and probes included),
- cache hit rate when the same specs are asked again with the stored code as the cache.

    python benchmarks/llm_codegen.py --provider llamacpp --set model_path=$(python -c \\
        "from neuromosaic_core.testing.models import qwen_coder_gguf; print(qwen_coder_gguf())")
    python benchmarks/llm_codegen.py --provider openai --set base_url=http://127.0.0.1:8000/v1 --set model=qwen
    python benchmarks/llm_codegen.py ... --encoder resnet2d --input-shape 1,8,8   # a graph family

Needs torch (the probe), the ``mlp_conv1d`` encoder, the ``template`` generator and the provider's
plugin. Not run by CI (about 10-20 minutes with the 0.5B model on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from neuromosaic_core.codegen import CodeGenFailed, generate_validated_code
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.layers import LayerError, analyse
from neuromosaic_core.library import create_codegen, create_encoder


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", default="llamacpp")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a provider setting (repeatable)")
    parser.add_argument("--specs", type=int, default=30)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every spec's record here")
    parser.add_argument("--encoder", default="mlp_conv1d", help="the family whose space the specs are sampled from")
    parser.add_argument("--input-shape", default="40", help="the task's input shape, comma-separated (1,8,8 for digits_images)")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    codegen = create_codegen(args.provider, **{k: _value(v) for k, v in settings.items()})
    fallback = create_codegen("template")
    encoder = create_encoder(args.encoder)
    shape = tuple(int(d) for d in args.input_shape.split(","))
    space, rng = encoder.search_space(), random.Random(args.seed)
    specs: dict[str, object] = {}
    while len(specs) < args.specs:
        spec = encoder.decode(space.sample(rng))
        try:  # the search's constraint check drops specs whose shapes do not work out, before codegen
            analyse(spec, shape, args.classes)
        except LayerError:
            continue
        specs.setdefault(spec.canonical_hash(), spec)
    rows, cache = [], {}
    for i, spec in enumerate(specs.values(), 1):
        request = CodeGenRequest(spec, shape, args.classes)
        start = time.perf_counter()
        try:
            outcome = generate_validated_code(codegen, request, args.attempts, args.provider, fallback, "template")
            record, usable = outcome.record, True
        except CodeGenFailed as exc:  # even the fallback failed: no usable code for this spec
            outcome, record, usable = None, exc.record, False
        wall = time.perf_counter() - start
        attempts = [a for a in record.attempts if a.provider == args.provider]
        first = attempts[0].stage if attempts else "none"
        row = {
            "usable": usable,
            "spec": spec.describe(),
            "first_valid": first in ("fidelity", "accepted"),
            "first_faithful": first == "accepted",
            "llm_accepted": usable and not record.fallback,
            "fallback": record.fallback,
            "rounds": len(attempts),
            "stages": [a.stage for a in attempts],
            "wall_s": round(wall, 2),
            "completion_tokens": sum(a.completion_tokens or 0 for a in attempts),
            "prompt_tokens": sum(a.prompt_tokens or 0 for a in attempts),
            "errors": [a.error for a in attempts if a.error],
        }
        rows.append(row)
        if outcome is not None and not record.fallback:
            cache[record.cache_key] = outcome.code
        print(f"[{i:2}/{len(specs)}] {row['stages']} {wall:5.1f}s {spec.describe()}", flush=True)
    hits, start = 0, time.perf_counter()
    for spec in specs.values():
        again = generate_validated_code(codegen, CodeGenRequest(spec, shape, args.classes), args.attempts, args.provider, fallback,
                                        "template", cache_lookup=cache.get)
        hits += again.record.cached
    cached_wall = time.perf_counter() - start
    codegen.close()
    n = len(rows)

    def pct(key: str) -> str:
        return f"{sum(r[key] for r in rows)}/{n} ({100 * sum(r[key] for r in rows) / n:.0f}%)"

    summary = {
        "provider": args.provider, "model": codegen.identity()[0], "template": codegen.identity()[1], "specs": n,
        "attempts": args.attempts,
        "valid_first_try": pct("first_valid"), "faithful_first_try": pct("first_faithful"),
        "valid_and_faithful_after_repair": pct("llm_accepted"), "fallback": pct("fallback"),
        "usable_code": pct("usable"),
        "median_wall_s_per_spec": round(statistics.median(r["wall_s"] for r in rows), 2),
        "median_completion_tokens_per_spec": statistics.median(r["completion_tokens"] for r in rows),
        "median_prompt_tokens_per_spec": statistics.median(r["prompt_tokens"] for r in rows),
        "cache_hit_rate_on_repeat": f"{hits}/{n} ({100 * hits / n:.0f}%)",
        "repeat_run_wall_s": round(cached_wall, 2),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
