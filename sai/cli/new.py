"""`sai new FUNCTION --from image-classify|text-embed|blank [--model NAME]` (sai/scaffold.py)."""

from __future__ import annotations

from sai import paths


def register(sub) -> None:
    p = sub.add_parser(
        "new",
        help="scaffold a function: functions/NAME/, a test and a stack.yml entry",
        description="Scaffold functions/FUNCTION/ (handler.py, requirements.txt), tests/test_fn_FUNCTION.py "
        "(through the real gateway) and a stack.yml entry in the shipped functions' style. "
        "image-classify serves any classification model (MODEL_NAME picks it); text-embed any encoder.",
    )
    p.add_argument("function", metavar="FUNCTION", help="function name (OpenFaaS: lowercase letters, digits, '-')")
    p.add_argument("--from", dest="template", required=True, choices=["image-classify", "text-embed", "blank"])
    p.add_argument("--model", metavar="NAME", help="model in model_repository/ (default: the template's own)")
    p.set_defaults(func=cmd_new)


def cmd_new(args) -> int:
    from sai.scaffold import new_function

    new_function(paths.repo_root(), args.function, args.template, args.model)
    return 0
