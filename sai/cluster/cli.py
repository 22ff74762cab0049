"""`sai cluster ...`: the command group. Reads through reads.ClusterReads (kubernetes + kserve
SDKs), changes through Helm; every command that talks to the API server needs a kubeconfig."""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path

from sai import cluster
from sai.cluster import helm as helm_mod
from sai.cluster.kubeconfig import KubeconfigError, resolve

EXIT_PREREQS = 4
EXIT_API = 5  # the API server could not be reached or refused the request
DEFAULT_WAIT_S = 900.0


def _error(message: str, code: int = 1):
    from sai.cluster.project import SaiError

    return SaiError(message, code)


def api_errors(fn):
    """API failures (server unreachable, 401/403, the SDK's wrapped errors) as one line, exit 5."""
    import functools

    @functools.wraps(fn)
    def wrapper(args):
        from sai.cluster.project import SaiError

        try:
            return fn(args)
        except SaiError:
            raise
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in ("kubernetes", "kserve"):
                raise
            raise _error(
                f"{exc.name} is not installed: pip install -e '.[cluster]' (the kubernetes and kserve SDKs)", 2
            ) from None
        except Exception as exc:  # noqa: BLE001 - narrowed by module below
            module = type(exc).__module__
            sdk = module.startswith(("urllib3", "kubernetes")) or (
                isinstance(exc, RuntimeError) and "Exception when calling" in str(exc)
            )
            if not sdk:
                raise
            reason = getattr(exc, "reason", None) or str(exc)
            status = getattr(exc, "status", None)
            where = f" ({args.kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'})"
            raise _error(
                f"Kubernetes API{where}: {f'HTTP {status}: ' if status else ''}{str(reason).splitlines()[0][:300]}", EXIT_API
            ) from None

    return wrapper


def kubeconfig_of(args):
    try:
        return resolve(args.kubeconfig, args.context)
    except KubeconfigError as exc:
        raise _error(str(exc), exc.exit_code) from None


def reads_of(args):
    from sai.cluster.reads import ClusterReads

    return ClusterReads(kubeconfig_of(args))  # api_errors turns a missing SDK into exit 2


def function_names() -> list[str]:
    from sai import paths
    from sai.cluster.project import load_stack

    return list(load_stack(paths.repo_root() / "stack.yml").functions)


def check_values_files(values: list[str]) -> None:
    for v in values:
        if not Path(v).is_file():
            raise _error(f"{v}: no such values file", 2)


def check_models_bucket(profile: str, values: list[str], alternative: str = "") -> None:
    """The chart names no models bucket (S3 bucket names are global): stop before anything runs
    when the profile reads S3 and no values file names one."""
    from sai.cluster import model_push

    if model_push.chart_uri(profile, values) == "":
        raise _error(
            f"modelRepository.s3.uri is empty for the {profile} profile: the chart has no default bucket "
            "(S3 bucket names are global); set yours in a values file and pass it with -f my-values.yaml "
            f"(docs/kubernetes.md, First install){', ' + alternative if alternative else ''}",
            2,
        )


def _run_helm(args_list: list[str]) -> int:
    import subprocess

    from sai.cluster.project import tool_path

    print(helm_mod.command_line(args_list), file=sys.stderr)
    return subprocess.run([str(tool_path("helm")), *args_list], check=False).returncode


# ------------------------------------------------------------------ install / uninstall
def cmd_install(args) -> int:
    from sai.cluster.project import run_tool

    check_values_files(args.values)
    kc = kubeconfig_of(args)
    check_models_bucket(args.profile, args.values)
    install = helm_mod.install_args(kc, args.profile, args.values, args.namespace, args.release, wait=args.wait)
    if args.dry_run:
        print(f"# would run (no cluster contacted): {helm_mod.command_line(install)}")
        print("# prerequisite checks and the chart's install-time checks run only against a cluster")
        sys.stdout.write(run_tool("helm", *helm_mod.template_args(install, args.api_versions)).stdout)
        return 0
    if not args.skip_prereqs:
        from sai.cluster import prereqs

        gathered = prereqs.gather(reads_of(args), args.profile, args.namespace)
        problems = prereqs.check(**gathered)
        if args.skip_gpu_check:
            problems = [p for p in problems if p.check != "GPU"]
        if problems:
            print(f"{len(problems)} prerequisite(s) missing for the {args.profile} profile:", file=sys.stderr)
            for p in problems:
                print(f"- {p}", file=sys.stderr)
            print(f"(or run {prereqs.BOOTSTRAP.format(profile=args.profile)}, which installs them all)", file=sys.stderr)
            return EXIT_PREREQS
        print(f"prerequisites for the {args.profile} profile: ok")
    rc = _run_helm(install)
    if rc != 0 or not args.wait:
        return rc
    if args.profile == "knative":
        print("the knative profile has no InferenceService; `kubectl wait ksvc --for=condition=Ready` checks Triton")
        return 0
    return _wait(args, reads_of(args))


def cmd_uninstall(args) -> int:
    kc = kubeconfig_of(args)
    argv = helm_mod.uninstall_args(kc, args.namespace, args.release, wait=args.wait)
    if args.dry_run:
        print(f"# would run: {helm_mod.command_line(argv)}")
        return 0
    rc = _run_helm(argv)
    if rc == 0:
        print(
            "kept on purpose: MinIO's data volume and Triton's admin-key Secret (helm.sh/resource-policy: keep); "
            f"delete them with kubectl -n {args.namespace} if you want them gone"
        )
    return rc


# ------------------------------------------------------------------ status / wait
def cmd_status(args) -> int:
    from sai.cluster import status

    summary = status.collect(reads_of(args), function_names(), args.release, args.namespace, args.function_namespace)
    print(status.to_json(summary) if args.json else status.render(summary))
    return summary["exit_code"]


def _wait(args, reads) -> int:
    from sai.cluster.wait import NotReady, wait_ready

    name = cluster.isvc_name(args.release)
    try:
        isvc = wait_ready(reads, args.namespace, name, args.timeout)
    except NotReady as exc:
        raise _error(str(exc), 1) from None
    print(f"inferenceservice {name}: Ready {((isvc or {}).get('status') or {}).get('url', '')}".rstrip())
    return 0


def cmd_wait(args) -> int:
    reads = reads_of(args)
    if reads.isvc(args.namespace, cluster.isvc_name(args.release)) is None:
        raise _error(f"no inferenceservice {args.namespace}/{cluster.isvc_name(args.release)}: run `sai cluster install`", 3)
    return _wait(args, reads)


# ------------------------------------------------------------------ coldstart
def request_body(function: str, image: str | None, text: str | None) -> tuple[bytes, str]:
    if function == "object-classify":
        raise _error("object-classify is triggered by bucket notifications; time a cold start with another function", 2)
    if "image" in function:
        if image:
            path = Path(image)
            if not path.is_file():
                raise _error(f"{image}: no such file", 2)
            return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            import io

            from PIL import Image
            from skimage import data
        except ImportError:
            raise _error("pass --image FILE (scikit-image, which ships the default cat photo, is not installed)", 2) from None
        buf = io.BytesIO()
        Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=92)
        return buf.getvalue(), "image/jpeg"
    return json.dumps({"text": text or "What a wonderful day!"}).encode(), "application/json"


def cmd_coldstart(args) -> int:
    from sai.cluster import coldstart

    gateway = (args.gateway or os.environ.get("OPENFAAS_URL") or "").rstrip("/")
    if not gateway:
        raise _error(
            "pass --gateway URL or set OPENFAAS_URL (the cluster's OpenFaaS gateway; kind: http://127.0.0.1:8080). "
            "No default, so a cold start is never timed against the local `sai up` platform by mistake.",
            2,
        )
    body, content_type = request_body(args.function, args.image, args.text)
    reads = reads_of(args)
    name = cluster.isvc_name(args.release)
    isvc = reads.isvc(args.namespace, name)
    if isvc is None:
        raise _error(f"no inferenceservice {args.namespace}/{name}: run `sai cluster install`", 3)
    pred = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    revision = reads.revision(args.namespace, pred["latestReadyRevision"]) if pred.get("latestReadyRevision") else None
    window = coldstart.scale_window(revision, reads.configmap("knative-serving", "config-autoscaler"))
    pods = coldstart.live_pods(reads.pods(args.namespace, cluster.TRITON_COMPONENT))
    if pods:
        if args.no_wait:
            raise _error(
                f"Triton is up ({len(pods)} pod(s)); {coldstart.window_text(window)}. Run again later, or without --no-wait.", 1
            )
        print(f"waiting for Triton to scale to zero ({len(pods)} pod(s)); {coldstart.window_text(window)}", file=sys.stderr)
        try:
            waited = coldstart.wait_for_zero(reads, args.namespace, args.timeout)
        except TimeoutError as exc:
            raise _error(f"{exc}. {coldstart.window_text(window)}; is something still sending requests?", 1) from None
        print(f"scaled to zero after {waited:.0f}s", file=sys.stderr)
    url = f"{gateway}/function/{args.function}"
    sent_at = coldstart.now()
    import requests

    try:
        ttfb, total, code, _ = coldstart.send(url, body, content_type, args.request_timeout)
    except requests.RequestException as exc:
        raise _error(f"POST {url}: {exc}", 4) from None
    rep = coldstart.report(
        sent_at,
        ttfb,
        total,
        code,
        reads.pods(args.namespace, cluster.TRITON_COMPONENT),
        reads.events(args.namespace, "involvedObject.kind=Pod"),
    )
    rep["scale_to_zero_window"] = window
    print(json.dumps(rep, indent=2) if args.json else coldstart.render(rep))
    return 0 if 200 <= code < 300 else 1


# ------------------------------------------------------------------ models push
def cmd_models_push(args) -> int:
    from sai import paths
    from sai.cluster import model_push

    repo = Path(args.repo) if args.repo else paths.model_repository()
    if args.bucket:
        bucket, prefix = args.bucket, (args.prefix if args.prefix is not None else "serverless-ai").strip("/")
    else:
        check_values_files(args.values)
        uri = model_push.chart_uri(args.profile, args.values)
        if uri is None:
            raise _error(
                f"the {args.profile} profile reads models from a volume, not S3 (modelRepository.source=pvc); "
                "pass --bucket to push anyway",
                2,
            )
        check_models_bucket(args.profile, args.values, "or pass --bucket")
        bucket, prefix = model_push.split_uri(uri)
        if args.prefix is not None:
            prefix = args.prefix.strip("/")
    problems = model_push.problems(repo, check_builders=not args.skip_build_check)
    if problems:
        raise _error("refusing to push models that are not built:\n  " + "\n  ".join(problems), 1)
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result = model_push.push(model_push.s3_client(args.endpoint, args.region), bucket, prefix, repo, dry_run=args.dry_run)
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise _error(f"s3://{bucket}/{prefix}: {exc}", 4) from None
    print(
        f"{'would push' if args.dry_run else 'pushed'} {len(result['uploaded'])} files ({result['bytes'] / 1e6:.1f} MB) "
        f"to s3://{bucket}/{prefix}; storageUri: s3://{bucket}/{prefix}"
        + (f"; {len(result['deleted'])} stale deleted" if result["deleted"] else "")
    )
    return 0


# ------------------------------------------------------------------ parser
def register(sub) -> None:
    parser = sub.add_parser(
        "cluster",
        help="operate the Kubernetes platform: install, status, wait, coldstart, models push, uninstall",
        description=(
            "Operate charts/serverless-ai on a cluster. Reads use the kubernetes and kserve Python SDKs; "
            "changes use Helm (`sai tools install` provides it). A kubeconfig is required: --kubeconfig, "
            "else $KUBECONFIG, else ~/.kube/config; there is no fallback to localhost:8080, where `sai up` listens. "
            "Needs the `cluster` extra: pip install -e '.[cluster]'."
        ),
    )
    cl = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    kube = argparse.ArgumentParser(add_help=False)
    kube.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG, else ~/.kube/config; required)")
    kube.add_argument("--context", help="kubeconfig context (default: its current-context)")
    kube.add_argument("--namespace", default=cluster.NAMESPACE, help="release namespace (default: %(default)s)")
    kube.add_argument(
        "--release", default=cluster.RELEASE, help="Helm release (default: %(default)s; stack.yml's TRITON_URL assumes it)"
    )

    p = cl.add_parser(
        "install",
        parents=[kube],
        help="check prerequisites, then helm upgrade --install the chart",
        description="Check the prerequisites through the API (KServe and Knative CRDs and versions, Knative's "
        "settings, OpenFaaS, namespaces, a GPU for the gpu/knative profiles) and name the command "
        "that fixes each missing one; then `helm upgrade --install` charts/serverless-ai with "
        "values-PROFILE.yaml and your --values files.",
    )
    p.add_argument("--profile", choices=helm_mod.PROFILES, default="gpu", help="values profile (default: %(default)s)")
    p.add_argument(
        "--values", "-f", action="append", default=[], metavar="FILE", help="extra values file, after the profile's (repeatable)"
    )
    p.add_argument("--wait", action="store_true", help="helm --wait, then wait until the InferenceService is Ready")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait for Ready with --wait (default: %(default)s)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the helm command and render the chart offline (helm template); no cluster contacted",
    )
    p.add_argument(
        "--api-versions", action="append", default=[], help="with --dry-run: helm --api-versions (e.g. monitoring.coreos.com/v1)"
    )
    p.add_argument("--skip-prereqs", action="store_true", help="do not check prerequisites (the chart's own checks still run)")
    p.add_argument("--skip-gpu-check", action="store_true", help="allow no GPU node yet (GPU node groups that scale from zero)")
    p.set_defaults(func=api_errors(cmd_install))

    p = cl.add_parser(
        "status",
        parents=[kube],
        help="one table: InferenceService, functions, MinIO, last cold start",
        description="InferenceService (Ready condition and reason, URL, latest ready revision, desired/actual "
        "replicas), each function of stack.yml (ready replicas, image), MinIO and its bucket "
        "notification, the last cold start. Exit 0 ready, 1 degraded, 3 not installed.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--function-namespace", default=cluster.FUNCTION_NAMESPACE, help="OpenFaaS function namespace (default: %(default)s)"
    )
    p.set_defaults(func=api_errors(cmd_status))

    p = cl.add_parser(
        "wait",
        parents=[kube],
        help="wait until the InferenceService is Ready (KServe SDK + a watch)",
        description="Return once the InferenceService is Ready; exit 1 after --timeout, 3 when it does not exist.",
    )
    p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds (default: %(default)s)")
    p.set_defaults(func=api_errors(cmd_wait))

    p = cl.add_parser(
        "coldstart",
        parents=[kube],
        help="wait for Triton to scale to zero, wake it with one request, time it",
        description="1. wait until Triton has no pod (or, with --no-wait, say how long the scale-to-zero window is); "
        "2. send one request through the OpenFaaS gateway; 3. report the time to first byte and "
        "where it went: pod created, scheduled, models fetched, image pulled, container started, "
        "model ready, first byte.",
    )
    p.add_argument("--function", default="image-classify", help="function to call (default: %(default)s)")
    p.add_argument("--image", metavar="FILE", help="image to send to an image function (default: scikit-image's cat)")
    p.add_argument("--text", help="text to send to a text function")
    p.add_argument("--gateway", help="OpenFaaS gateway URL (default: $OPENFAAS_URL; required)")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait for scale to zero (default: %(default)s)"
    )
    p.add_argument("--no-wait", action="store_true", help="fail at once if Triton is up, with the scale-to-zero window")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds for the request (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=api_errors(cmd_coldstart))

    models_p = cl.add_parser("models", help="the model store the chart's storageUri points at")
    msub = models_p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    p = msub.add_parser(
        "push",
        help="upload the built model_repository/ to the chart's S3 model store",
        description="Upload config.pbtxt, configs/, label files and 1/model.onnx of every model to "
        "s3://BUCKET/PREFIX (default: modelRepository.s3.uri from your -f values files; the chart has none), deleting stale "
        "objects under the pushed models. Refuses models that are not built. Talks to S3 only "
        "(no kubeconfig): credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile; "
        "for the chart's MinIO: kubectl -n serverless-ai port-forward svc/serverless-ai-minio 9000 "
        "and --endpoint http://127.0.0.1:9000.",
    )
    p.add_argument("--bucket", help="bucket (default: from modelRepository.s3.uri in your -f values files)")
    p.add_argument("--prefix", help="key prefix (default: from the URI, or serverless-ai with --bucket)")
    p.add_argument("--profile", choices=helm_mod.PROFILES, default="gpu", help="profile whose URI to use (default: %(default)s)")
    p.add_argument(
        "--values",
        "-f",
        action="append",
        default=[],
        metavar="FILE",
        help="your values files, as for `sai cluster install -f`: modelRepository.s3.uri is read from them (repeatable)",
    )
    p.add_argument("--endpoint", help="S3 endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--region", help="region (default: boto3's, e.g. $AWS_DEFAULT_REGION)")
    p.add_argument("--repo", help="model repository folder (default: the checkout's model_repository/)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded and deleted")
    p.add_argument("--skip-build-check", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_models_push)

    p = cl.add_parser(
        "uninstall",
        parents=[kube],
        help="helm uninstall the release",
        description="helm uninstall; MinIO's volume and Triton's admin-key Secret are kept on purpose.",
    )
    p.add_argument("--wait", action="store_true", help="wait until the resources are gone")
    p.add_argument("--dry-run", action="store_true", help="print the helm command only")
    p.set_defaults(func=api_errors(cmd_uninstall))
