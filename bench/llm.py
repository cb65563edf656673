"""The local LLM responder (SmolLM2-135M-Instruct, 4-bit ONNX on onnxruntime CPU).

Each measurement runs in a fresh child process, so load times and peak RSS are its own:
- ``load``: cold (GGUF read, ONNX decoder built and written to an empty cache, session, system
  prompt) and warm (the cached decoder), seconds, and peak RSS.
- ``answer``: per prompt and thread count, after one warm-up answer, through the responder's own
  path (decoder, streaming text, the ``max_sentences`` cut): time to the first token, to
  the first text delta, to the first *clause* (the first chunk ``ChunkAssembler`` releases:
  what the TTS waits for), decode tokens/s (tokens after the first / their time), whole answer.
  Medians and p95 over prompts x repeats.
- ``variants``: decode tokens/s of the graph variants (fused GroupQueryAttention vs attention in
  standard ops; int8 vs float activations), one thread, a fixed 32-token decode after a prompt.

    python -m huma_rt.bench.llm [--threads 1 2] [--repeat 2] [--out bench/results/llm-2026-12-06]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS = [
    "What is the weather like?",
    "Tell me a joke.",
    "Who are you?",
    "How do I make pancakes?",
    "What is the capital of France?",
    "Can you recommend a good book to read this weekend?",
]


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    cur = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_answers(cache: str, threads: int, repeat: int, max_tokens: int) -> dict:
    from huma_rt.speech.local_llm import LocalLLMConfig, LocalLLMResponder, cut_after_sentences
    from huma_rt.speech.text import ChunkAssembler

    t0 = time.perf_counter()
    r = LocalLLMResponder(LocalLLMConfig(cache_dir=cache, num_threads=threads, max_tokens=max_tokens))
    load_s = time.perf_counter() - t0
    rss_load = _rss_mb()
    list(r.respond("Hello!"))  # warm-up answer
    runs = []
    for _ in range(repeat):
        for prompt in PROMPTS:
            stream = r.tokenizer.stream_decoder()
            asm = ChunkAssembler()
            t, cpu = time.perf_counter(), time.process_time()
            first_tok = first_delta = first_clause = first_cpu = None
            n, text = 0, []

            def deltas(prompt=prompt, stream=stream):  # LocalLLMResponder.respond, with the tokens counted
                nonlocal n, first_tok, first_cpu
                for tok in r.generate(prompt):
                    n += 1
                    if first_tok is None:
                        first_tok, first_cpu = time.perf_counter(), time.process_time()
                    delta = stream.push(tok)
                    if delta:
                        yield delta

            for delta in cut_after_sentences(deltas(), r.config.max_sentences) if r.config.max_sentences else deltas():
                now = time.perf_counter()
                first_delta = first_delta or now
                text.append(delta)
                if first_clause is None and asm.feed(delta):
                    first_clause = now
            end, cpu_end = time.perf_counter(), time.process_time()
            if first_clause is None and asm.close():
                first_clause = end  # a one-clause answer is released at its end
            runs.append({
                "prompt": prompt, "prompt_tokens": len(r.prompt_ids(prompt)), "tokens": n,
                "first_token_s": (first_tok or end) - t, "first_delta_s": (first_delta or end) - t,
                "first_clause_s": (first_clause or end) - t, "total_s": end - t,
                "tok_per_s": (n - 1) / (end - first_tok) if n > 1 and first_tok else float("nan"),
                "prompt_cpu_ms": ((first_cpu or cpu_end) - cpu) * 1e3,
                "cpu_ms_per_token": (cpu_end - first_cpu) * 1e3 / (n - 1) if n > 1 else float("nan"),
                "answer": "".join(text),
            })  # fmt: skip
    return {"threads": threads, "load_s": load_s, "rss_after_load_mb": rss_load[0], "peak_rss_mb": _rss_mb()[1],
            "system_tokens": len(r._system_ids), "runs": runs}  # fmt: skip


def _child_load(cache: str) -> dict:
    from huma_rt.speech.local_llm import LocalLLMConfig, LocalLLMResponder, build_model

    t0 = time.perf_counter()
    built = build_model(LocalLLMConfig(cache_dir=cache))
    build_s = time.perf_counter() - t0
    LocalLLMResponder(LocalLLMConfig(cache_dir=cache))
    total = time.perf_counter() - t0
    return {"built": built.built, "build_s": build_s, "load_s": total, "onnx_mb": built.onnx.stat().st_size / 2**20,
            "peak_rss_mb": _rss_mb()[1]}  # fmt: skip


def _child_variants(tokens: int) -> dict:
    import onnxruntime as ort

    from huma_rt.speech.llm_gguf import packaged_gguf, read_gguf
    from huma_rt.speech.llm_onnx import build_decoder
    from huma_rt.speech.llm_tokenizer import BpeTokenizer

    model = read_gguf(packaged_gguf())
    tok = BpeTokenizer(model.tokens, model.merges, model.token_types)
    ids = tok.encode("<|im_start|>user\nTell me about the sea.<|im_end|>\n<|im_start|>assistant\n", special=True)
    sp = model.spec
    out = {}
    for name, fused, acc, n in (("gqa-int8", True, 4, tokens), ("ops-int8", False, 4, tokens),
                                ("gqa-float", True, 0, max(4, tokens // 8))):  # fmt: skip
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(build_decoder(model, acc, fused_attention=fused).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
        e = np.zeros((1, sp.n_head_kv, 0, sp.head_dim), np.float32)
        past = [(e, e)] * sp.n_layer

        def step(x, past, sess=sess):
            feed = {"input_ids": np.array(x, np.int64)}
            for i, (k, v) in enumerate(past):
                feed[f"past_key.{i}"], feed[f"past_value.{i}"] = k, v
            res = sess.run(None, feed)
            return res[0], list(zip(res[1::2], res[2::2], strict=True))

        t = time.perf_counter()
        logits, past = step(ids, past)
        prefill = time.perf_counter() - t
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            logits, past = step([int(np.argmax(logits))], past)
        out[name] = {"prefill_tokens": len(ids), "prefill_s": prefill, "decode_tokens": n,
                     "tok_per_s": n / (time.perf_counter() - t),
                     "cpu_ms_per_token": (time.process_time() - cpu) * 1e3 / n}  # fmt: skip
    return out


def _spawn(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "huma_rt.bench.llm", *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _med(runs: list[dict], key: str) -> tuple[float, float]:
    a = np.array([r[key] for r in runs], np.float64)
    return float(np.nanmedian(a)), float(np.nanpercentile(a, 95))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=2, help="passes over the prompts per thread count")
    p.add_argument("--max-tokens", type=int, default=80)
    p.add_argument("--variant-tokens", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("bench/results/llm-2026-12-06"))
    p.add_argument("--child", choices=["load", "answers", "variants"], help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child == "load":
        print(json.dumps(_child_load(a.cache)))
        return 0
    if a.child == "answers":
        print(json.dumps(_child_answers(a.cache, a.threads[0], a.repeat, a.max_tokens)))
        return 0
    if a.child == "variants":
        print(json.dumps(_child_variants(a.variant_tokens)))
        return 0

    from huma_rt.bench.common import machine

    with tempfile.TemporaryDirectory(prefix="huma-llm-bench-") as cache:
        cold = _spawn(["--child", "load", "--cache", cache])
        warm = _spawn(["--child", "load", "--cache", cache])
        answers = [_spawn(["--child", "answers", "--cache", cache, "--threads", str(t), "--repeat", str(a.repeat),
                           "--max-tokens", str(a.max_tokens)]) for t in a.threads]  # fmt: skip
    variants = _spawn(["--child", "variants", "--variant-tokens", str(a.variant_tokens)])
    rows = []
    for ans in answers:
        runs = ans["runs"]
        row = {"threads": ans["threads"], "load_s": round(ans["load_s"], 2), "peak_rss_mb": round(ans["peak_rss_mb"])}
        for key in ("first_token_s", "first_delta_s", "first_clause_s", "total_s"):
            med, p95 = _med(runs, key)
            row[key.replace("_s", "_ms") + "_p50"], row[key.replace("_s", "_ms") + "_p95"] = round(med * 1e3), round(p95 * 1e3)
        row["tok_per_s_p50"] = round(_med(runs, "tok_per_s")[0], 1)
        row["cpu_ms_per_token_p50"] = round(_med(runs, "cpu_ms_per_token")[0], 1)
        row["prompt_cpu_ms_p50"] = round(_med(runs, "prompt_cpu_ms")[0])
        row["prompt_tokens_p50"] = _med(runs, "prompt_tokens")[0]
        row["answer_tokens_p50"] = _med(runs, "tokens")[0]
        rows.append(row)
    record = {"scenario": "llm", "machine": machine(), "loadavg_at_end": os.getloadavg(), "load": {"cold": cold, "warm": warm},
              "answers": rows, "variants": variants, "runs": answers}  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "llm.json").write_text(json.dumps(record, indent=2) + "\n")
    (a.out / "llm.md").write_text(_markdown(record))
    print(_markdown(record))
    return 0


def _markdown(rec: dict) -> str:
    cold, warm = rec["load"]["cold"], rec["load"]["warm"]
    lines = [
        "# Local LLM responder (SmolLM2-135M-Instruct Q4_1 -> 4-bit ONNX, onnxruntime CPU)", "",
        f"Machine: {rec['machine'].get('cpu', '?')}; load average at the end {rec['loadavg_at_end'][0]:.1f} "
        "(shared machine: other jobs ran meanwhile).", "",
        f"- cold load (read GGUF, build + write the {cold['onnx_mb']:.0f} MB ONNX, session, system prompt): "
        f"{cold['load_s']:.1f} s (build {cold['build_s']:.1f} s), peak RSS {cold['peak_rss_mb']:.0f} MiB",
        f"- warm load (cached ONNX): {warm['load_s']:.1f} s, peak RSS {warm['peak_rss_mb']:.0f} MiB", "",
        "Wall-clock figures depend on what else runs; CPU ms per token (all the process's threads) does much less.", "",
        "| threads | load s | prompt tokens | prompt CPU ms | first token ms p50/p95 | first delta ms | first clause ms p50/p95 | tok/s p50 | decode CPU ms/token | answer ms p50 | tokens p50 | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rec["answers"]:
        lines.append(f"| {r['threads']} | {r['load_s']} | {r['prompt_tokens_p50']:.0f} | {r['prompt_cpu_ms_p50']} | {r['first_token_ms_p50']}/{r['first_token_ms_p95']} | "
                     f"{r['first_delta_ms_p50']} | {r['first_clause_ms_p50']}/{r['first_clause_ms_p95']} | "
                     f"{r['tok_per_s_p50']} | {r['cpu_ms_per_token_p50']} | {r['total_ms_p50']} | {r['answer_tokens_p50']:.0f} | {r['peak_rss_mb']} |")  # fmt: skip
    lines += ["", "Graph variants (1 thread, greedy decode after a prompt):", "", "| variant | prefill tokens | prefill ms | decode tok/s | CPU ms/token |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, v in rec["variants"].items():
        lines.append(f"| {name} | {v['prefill_tokens']} | {v['prefill_s'] * 1e3:.0f} | {v['tok_per_s']:.1f} | "
                     f"{v['cpu_ms_per_token']:.1f} |")  # fmt: skip
    lines += ["", "Answers (1 thread, first pass):", ""]
    for run in rec["runs"][0]["runs"][: len(PROMPTS)]:
        lines.append(f"- *{run['prompt']}* -> {run['answer'].strip()!r}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
