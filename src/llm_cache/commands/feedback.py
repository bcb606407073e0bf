"""``llm-cache feedback``: tell an error-bounded semantic cache that an answer was right or wrong."""

from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser(
        "feedback",
        help="report a wrong (or right) semantic-cache answer for a prompt",
        description=(
            "Report whether the answer a semantic cache in DATA_DIR gave for PROMPT was right. "
            "A wrong semantic hit is never served again for that prompt and tightens the learned "
            "error bound; a wrong exact hit is deleted. The cache that answered need not be this "
            "process: the candidate a lookup would pick now is taken as the one that answered."
        ),
    )
    parser.add_argument("prompt", help="the prompt as the application sent it (for chat: the canonical messages JSON)")
    parser.add_argument("--data-dir", required=True, help="the semantic cache's directory (SemanticCache(data_dir=...))")
    parser.add_argument("--llm-string", required=True, help="the llm_string the answer was cached under")
    parser.add_argument("--namespace", default="default", help="the cache namespace (default: %(default)s)")
    verdict = parser.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--wrong", action="store_true", help="the answer was wrong")
    verdict.add_argument("--right", action="store_true", help="the answer was right")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    from ..errors import ConfigurationError
    from ..semantic.cache import SemanticCache
    from ..semantic.feedback import apply_feedback

    if not os.path.isdir(args.data_dir):
        raise ConfigurationError(f"no semantic cache directory {args.data_dir!r}")
    # The learned state does not depend on the error rate: any value opens it.
    cache = SemanticCache(data_dir=args.data_dir, namespace=args.namespace, max_error_rate=0.02)
    try:
        concerned = apply_feedback(cache, args.prompt, args.llm_string, correct=args.right)
    finally:
        cache.close()
    messages = {
        "exact": "the cached answer for this prompt " + ("was deleted" if args.wrong else "is kept"),
        "semantic": "recorded" + ("; that entry is never served for this prompt again" if args.wrong else ""),
        "none": "nothing in the cache would answer this prompt; nothing recorded",
    }
    print(messages[concerned])
    return 0 if concerned != "none" else 1
