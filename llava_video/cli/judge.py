"""tools/judge.py: score every candidate answer 1-5 with an AI judge (step 2 of the DPO-from-AI-feedback loop).

    python tools/judge.py --candidates cands.jsonl --output judged.jsonl \\
        --backend openai --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-72B-Instruct

Backends: ``openai`` (any OpenAI-compatible chat-completions server; key from --api-key-env), ``transformers``
(a local causal LM folder), ``rule`` (a Python callable ``module:function``). Rerunning the same command resumes:
candidates already in --output are skipped and the cache (default ``<output>.cache.jsonl``) answers prompts
judged before. Exit code 2 with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from llava_video.cli.common import ArgumentParser, run_reporting_errors
from llava_video.errors import ConfigError
from llava_video.feedback.judge import judge_candidates
from llava_video.feedback.judges import Judge, OpenAICompatibleJudge, RuleBasedJudge

__all__ = ["build_parser", "build_judge", "load_rule", "main"]

DEFAULT_RULE = "llava_video.feedback.judges.rule_based:reference_overlap_rule"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="judge.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", required=True, help="candidates JSONL (see docs/dpo.md)")
    parser.add_argument("--output", required=True, help="judged JSONL, appended to and resumed")
    parser.add_argument("--cache", default=None, help="verdict cache JSONL (default: <output>.cache.jsonl)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    parser.add_argument("--retry-failed", action="store_true", help="judge again candidates that failed before")
    parser.add_argument("--backend", choices=["openai", "transformers", "rule"], required=True)
    parser.add_argument("--no-progress", action="store_true")
    http = parser.add_argument_group("openai backend")
    http.add_argument("--judge-url", help="server root, API base (.../v1) or full chat-completions URL")
    http.add_argument("--judge-model", help="model name the server knows")
    http.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    http.add_argument("--concurrency", type=int, default=8)
    http.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    http.add_argument("--max-retries", type=int, default=5, help="retries on 429/5xx/timeouts")
    http.add_argument("--backoff", type=float, default=1.0, help="first retry wait in seconds (doubles)")
    http.add_argument("--max-backoff", type=float, default=60.0)
    http.add_argument("--max-reasks", type=int, default=2, help="re-asks after a reply without a readable score")
    http.add_argument("--temperature", type=float, default=0.0)
    http.add_argument("--max-tokens", type=int, default=512)
    local = parser.add_argument_group("transformers backend")
    local.add_argument("--judge-model-dir", help="local transformers checkpoint folder")
    local.add_argument("--judge-chat-template", help="file with a Jinja chat template, if the tokenizer has none")
    local.add_argument("--device", default="auto")
    local.add_argument("--dtype", default="auto")
    local.add_argument("--batch-size", type=int, default=4)
    local.add_argument("--max-new-tokens", type=int, default=256)
    rule = parser.add_argument_group("rule backend")
    rule.add_argument("--rule", default=DEFAULT_RULE,
                      help="module:function taking (caption, question, reference, answer) and returning 1-5")
    return parser


def load_rule(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--rule must look like module:function, got {spec!r}")
    try:
        rule = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--rule {spec!r} cannot be loaded: {exc}") from None
    if not callable(rule):
        raise ConfigError(f"--rule {spec!r} is not callable")
    return rule


def build_judge(args: argparse.Namespace) -> Judge:
    if args.backend == "openai":
        if not args.judge_url or not args.judge_model:
            raise ConfigError("--backend openai needs --judge-url and --judge-model")
        return OpenAICompatibleJudge(
            url=args.judge_url, model=args.judge_model, api_key_env=args.api_key_env, concurrency=args.concurrency,
            timeout=args.timeout, max_retries=args.max_retries, backoff=args.backoff, max_backoff=args.max_backoff,
            max_reasks=args.max_reasks, temperature=args.temperature, max_tokens=args.max_tokens)
    if args.backend == "transformers":
        from llava_video.feedback.judges.transformers_judge import TransformersJudge

        if not args.judge_model_dir:
            raise ConfigError("--backend transformers needs --judge-model-dir")
        template = None
        if args.judge_chat_template:
            template_path = Path(args.judge_chat_template)
            if not template_path.is_file():
                raise ConfigError(f"--judge-chat-template {template_path}: no such file")
            template = template_path.read_text(encoding="utf-8")
        return TransformersJudge(model_dir=args.judge_model_dir, device=args.device, dtype=args.dtype,
                                 batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                                 max_reasks=args.max_reasks, chat_template=template)
    return RuleBasedJudge(rule=load_rule(args.rule), name=args.rule)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> str:
        cache = None if args.no_cache else (args.cache or f"{args.output}.cache.jsonl")
        return judge_candidates(candidates_path=args.candidates, output_path=args.output, judge=build_judge(args),
                                cache_path=cache, retry_failed=args.retry_failed,
                                progress=not args.no_progress).summary()

    return run_reporting_errors("judge.py", work)


if __name__ == "__main__":
    sys.exit(main())
