"""docs/kubernetes.md as a user follows it: its commands in the order they appear, its values
snippets fed to the real chart and bootstrap, and its numbers against the chart's."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from helpers import MODELS_BUCKET

from sai.cli import build_parser
from sai.k8s.helm_kubectl import CHART_DIR, REPO_ROOT, render_chart

DOC = REPO_ROOT / "docs/kubernetes.md"
# faas-cli subcommands that call the gateway, and those of them that need `faas-cli login`
# (everything under /system/; /function/ is open in CE).
GATEWAY_VERBS = set("up deploy list ls remove rm describe invoke secret logs scale login version".split())
OPEN_VERBS = {"invoke", "login", "version"}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in document order, list indentation removed."""
    blocks = []
    for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL):
        indent = len(m.group(1))
        body = "\n".join(line[indent:] for line in m.group(3).splitlines())
        blocks.append((m.group(2), body))
    return blocks


def shell_commands(text: str) -> list[str]:
    """The commands of the shell blocks, continuation lines joined, comments dropped."""
    commands = []
    for lang, body in code_blocks(text):
        if lang not in ("bash", "sh", "console"):
            continue
        joined = re.sub(r"(\\|\|)\n\s*", lambda m: " " if m.group(1) == "\\" else "| ", body)
        for line in joined.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


# A loop that returns once the forwarded gateway answers (its /healthz needs no login: openfaas/faas
# 0.27.13, the gateway of chart 15.0.6, gateway/main.go registers it without DecorateWithBasicAuth),
# or gives up after N tries and says so: a forward that died (port 8080 taken) never answers.
READY_WAIT = re.compile(
    r"^for i in \$\(seq (\d+)\); do curl -f\w* https?://(?:127\.0\.0\.1|localhost):8080/healthz\b.*&& break;\s+"
    r"\[ \"\$i\" = \1 \] && echo \"[^\"]+\" >&2; sleep \d+; done$"
)
UNBOUNDED_WAIT = re.compile(r"^(until|while) ")


def gateway_order_problems(commands: list[str]) -> tuple[list[str], int]:
    """Commands that talk to the OpenFaaS gateway before it is port-forwarded, before a
    backgrounded port-forward answers, or that need a login before `faas-cli login`; and how many
    gateway commands there were."""
    forwarded = answering = logged_in = False
    problems, seen = [], 0
    for cmd in commands:
        if re.search(r"kubectl .*port-forward .*svc/gateway", cmd):
            # In the background (&) it listens a moment later: the next command may find nothing.
            forwarded, answering = True, not cmd.rstrip().endswith("&")
            continue
        if READY_WAIT.match(cmd):
            answering = answering or forwarded
            continue
        if UNBOUNDED_WAIT.match(cmd):
            problems.append(f"a wait without a limit: {cmd}")
            continue
        verbs = re.findall(r"faas-cli (?:store )?(\w+)", cmd)
        calls = [v for v in verbs if v in GATEWAY_VERBS and not (v == "up" and "--skip-deploy" in cmd)]
        curls = re.findall(r"curl .*?https?://(?:127\.0\.0\.1|localhost):8080(/\S*)", cmd)
        if not calls and not curls:
            continue
        seen += 1
        if not forwarded:
            problems.append(f"before the port-forward: {cmd}")
        elif not answering:
            problems.append(f"before the port-forward answers: {cmd}")
        needs_login = any(v not in OPEN_VERBS for v in calls) or any(p.startswith("/system/") for p in curls)
        if needs_login and not logged_in:
            problems.append(f"before faas-cli login: {cmd}")
        if "login" in calls:
            logged_in = True
    return problems, seen


def test_gateway_commands_follow_the_port_forward_and_the_login():
    """The bootstrap leaves the gateway cluster-internal with generated basic auth, so a deploy
    before the port-forward gets connection refused, and before the login 401."""
    problems, seen = gateway_order_problems(shell_commands(DOC.read_text()))
    assert seen >= 3, "the install deploys and calls functions through the gateway"
    assert not problems, problems
    text = DOC.read_text()
    # The password the OpenFaaS chart generates (faas-netes chart 15.0.6 templates/secret.yaml:
    # Secret basic-auth, key basic-auth-password, user admin).
    assert "get secret basic-auth -o jsonpath='{.data.basic-auth-password}'" in text
    assert "faas-cli login --username admin --password-stdin" in text


def test_the_order_check_can_fail():
    wrong = "```bash\nfaas-cli up -f stack.yml\nkubectl -n openfaas port-forward svc/gateway 8080:8080 &\n```\n"
    problems, _ = gateway_order_problems(shell_commands(wrong))
    assert any("before the port-forward" in p for p in problems)
    assert any("before faas-cli login" in p for p in problems)
    unauth = (
        "```bash\nkubectl -n openfaas port-forward svc/gateway 8080:8080\n"
        "curl http://127.0.0.1:8080/function/x\ncurl -u admin:x http://127.0.0.1:8080/system/functions\n```\n"
    )
    problems, seen = gateway_order_problems(shell_commands(unauth))
    assert seen == 2 and problems == ["before faas-cli login: curl -u admin:x http://127.0.0.1:8080/system/functions"]
    # The race docs/kubernetes.md had: login right after a backgrounded port-forward.
    race = (
        "```bash\nkubectl -n openfaas port-forward svc/gateway 8080:8080 >/dev/null &\n"
        "kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 --decode |\n"
        "  faas-cli login --username admin --password-stdin\n```\n"
    )
    problems, _ = gateway_order_problems(shell_commands(race))
    assert problems and problems[0].startswith("before the port-forward answers: kubectl -n openfaas get secret")
    bounded = (
        "for i in $(seq 30); do curl -fs http://127.0.0.1:8080/healthz >/dev/null && break; \\\n"
        '  [ "$i" = 30 ] && echo "no gateway" >&2; sleep 1; done\n'
    )
    waited = race.replace("&\n", "&\n" + bounded, 1)
    assert gateway_order_problems(shell_commands(waited)) == ([], 1)
    # The wait docs/kubernetes.md had until i24d: it never ends when the forward died.
    forever = race.replace("&\n", "&\nuntil curl -fs http://127.0.0.1:8080/healthz >/dev/null; do sleep 1; done\n", 1)
    problems, _ = gateway_order_problems(shell_commands(forever))
    assert problems[0].startswith("a wait without a limit: until curl")
    foreground = race.replace(" >/dev/null &\n", "\n", 1)  # a forward in another terminal: answering
    assert gateway_order_problems(shell_commands(foreground)) == ([], 1)


@pytest.mark.parametrize("doc", ["README.md", "docs/kubernetes.md"])
def test_install_wait_on_the_gpu_profile_skips_the_gpu_check(doc):
    """The GPU profile aims for a node pool at zero, where `sai cluster install`'s GPU check
    refuses (exit 4): wherever the docs recommend it for that profile, they pass --skip-gpu-check
    and say why."""
    text = (REPO_ROOT / doc).read_text()
    lines = [line for line in re.sub(r"\\?\n\s*", " ", text).split("sai cluster install")[1:]]
    gpu = [line[:200] for line in lines if line.lstrip().startswith("--profile gpu")]
    assert gpu, "the docs recommend `sai cluster install --profile gpu`"
    assert all("--skip-gpu-check" in line.split("#")[0].split("`")[0] for line in gpu), gpu
    assert "scaled to zero" in text.split("--skip-gpu-check", 2)[-1][:400]
    assert build_parser().parse_args(["cluster", "install", "--profile", "gpu", "--skip-gpu-check"]).skip_gpu_check


# Every user-facing document that may show an install of the chart.
USER_DOCS = sorted({REPO_ROOT / "README.md", CHART_DIR / "README.md", *(REPO_ROOT / "docs").glob("*.md")})
PROFILE_VALUES = re.compile(r"(?:charts/serverless-ai/)?values-(kind|gpu|knative)\.yaml")


def chart_installs(text: str) -> list[str]:
    """`helm upgrade`/`helm install` commands of charts/serverless-ai: in shell blocks and in
    inline code."""
    prose = re.sub(r"^( *)```.*?^\1```", "", text, flags=re.MULTILINE | re.DOTALL)
    inline = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [c for c in shell_commands(text) + inline if re.search(r"\bhelm (upgrade|install)\b.*charts/serverless-ai", c)]


def profile_problems(command: str) -> list[str]:
    """An install must pass the profile's values file, before the user's: `helm upgrade` renders
    from the chart's defaults (GPU request, no node selector or tolerations) and forgets the
    previous release's values unless told --reuse-values."""
    files = re.findall(r"(?:-f|--values)[ =](\S+)", command)
    if not files or not PROFILE_VALUES.fullmatch(files[0]):
        return [f"no profile values file first: {command}"]
    return []


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_documented_install_passes_the_profile(doc):
    text = doc.read_text()
    problems = [p for c in chart_installs(text) for p in profile_problems(c)]
    assert not problems, problems


def test_the_profile_check_can_fail_and_sees_every_install():
    # docs/triggers.md until i24d: the profile's node selector, tolerations and scale-to-zero lost.
    old = (
        "```bash\nhelm upgrade --install serverless-ai charts/serverless-ai -n serverless-ai -f my-values.yaml \\\n"
        "  --set connectors.cron.enabled=true\n```\n"
    )
    assert profile_problems(chart_installs(old)[0])
    inline = "then `helm install serverless-ai\n charts/serverless-ai` again"
    assert chart_installs(inline) == ["helm install serverless-ai charts/serverless-ai"]
    assert profile_problems(chart_installs(inline)[0])
    good = "helm upgrade --install serverless-ai charts/serverless-ai -f charts/serverless-ai/values-gpu.yaml -f my-values.yaml"
    assert profile_problems(good) == [] and profile_problems(good.replace("values-gpu", "my-gpu")) != []
    assert chart_installs("`helm install` checks the cluster") == [], "prose about helm is not an install"
    assert sum(len(chart_installs(d.read_text())) for d in USER_DOCS) >= 2, "the chart README and docs/triggers.md"


def heredocs(text: str, files: dict[str, str]) -> dict[str, str]:
    """The documents' `cat > FILE <<'EOF'` / `cat >> FILE <<'EOF'` blocks applied in order."""
    for _, body in code_blocks(text):
        for op, name, content in re.findall(r"cat (>>?) (\S+) <<'EOF'\n(.*?)\nEOF", body, re.DOTALL):
            files[name] = (files.get(name, "") if op == ">>" else "") + content + "\n"
    return files


def test_the_connectors_upgrade_keeps_the_gpu_profile(tmp_path):
    """docs/triggers.md's cluster command, run on the my-values.yaml of docs/kubernetes.md: the
    connectors are added and the GPU release keeps its node placement and initial scale."""
    text = (REPO_ROOT / "docs/triggers.md").read_text()
    files = heredocs(text, heredocs(DOC.read_text(), {}))
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    (command,) = chart_installs(text)
    values = [tmp_path / f if (tmp_path / f).exists() else REPO_ROOT / f for f in re.findall(r"-f (\S+)", command)]
    objs = render_chart(values)
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"} >= {
        "serverless-ai-cron-connector",
        "serverless-ai-nats-connector",
    }
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    gpu = next(o for o in render_chart([CHART_DIR / "values-gpu.yaml", MODELS_BUCKET]) if o["kind"] == "InferenceService")
    assert isvc["metadata"]["annotations"] == gpu["metadata"]["annotations"], "initial scale, retention, deadline"
    for field in ("nodeSelector", "tolerations", "runtimeClassName", "minReplicas"):
        assert isvc["spec"]["predictor"].get(field) == gpu["spec"]["predictor"].get(field), field


def docs_values_file(text: str) -> str:
    """The values file the GPU install writes (`cat > my-values.yaml <<'EOF' ... EOF`)."""
    for _, body in code_blocks(text):
        if m := re.search(r"cat > my-values\.yaml <<'EOF'\n(.*?)\nEOF", body, re.DOTALL):
            return m.group(1)
    raise AssertionError("docs/kubernetes.md no longer writes my-values.yaml")


def test_the_bucket_is_one_value_from_your_values_file(tmp_path):
    """The install writes the bucket once, in my-values.yaml, and every step reads that file: the
    model upload, the bootstrap (which gives it to helm) and `sai cluster install -f`."""
    text = DOC.read_text()
    mine = tmp_path / "my-values.yaml"
    mine.write_text(docs_values_file(text))
    uri = yaml.safe_load(mine.read_text())["modelRepository"]["s3"]["uri"]
    assert uri.startswith("s3://") and "s3://models/" not in text
    isvc = next(o for o in render_chart([CHART_DIR / "values-gpu.yaml", mine]) if o["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri
    commands = shell_commands(text)
    assert "k8s/bootstrap.sh --profile gpu --values my-values.yaml [--gpu-operator]" in commands
    push = next(c for c in commands if "sai cluster models push" in c)
    assert "-f my-values.yaml" in push
    assert "sai cluster install --profile gpu -f my-values.yaml --wait" in text
    parser = build_parser()
    for argv in (
        ["cluster", "install", "--profile", "gpu", "-f", str(mine), "--wait"],
        ["cluster", "models", "push", "--profile", "gpu", "-f", str(mine)],
    ):
        assert parser.parse_args(argv).values == [str(mine)]
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "k8s/bootstrap.sh"), "--dry-run", "--profile", "gpu", "--values", str(mine)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"-f {mine}" in out
    # object-classify's results store on the GPU profile (no MinIO there): stack.yml reads it.
    assert "export S3_ENDPOINT=" in text and "${S3_ENDPOINT" in (REPO_ROOT / "stack.yml").read_text()


def test_object_classify_uses_your_uploads_bucket(monkeypatch):
    """stack.yml's object-classify reads and writes the bucket UPLOADS_BUCKET names (AWS bucket
    names are global: `uploads` belongs to someone else there), by default the chart MinIO's; the
    GPU install sets it; `sai up` keeps its own local bucket whatever the shell exports."""
    from sai.local import s3_server
    from sai.local.stack import load_stack

    stack = REPO_ROOT / "stack.yml"
    buckets = ("SOURCE_BUCKETS", "RESULTS_BUCKET")
    monkeypatch.delenv("UPLOADS_BUCKET", raising=False)
    env = load_stack(stack).functions["object-classify"].environment
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert {env[k] for k in buckets} == {values["minio"]["uploadsBucket"]}
    oc = values["functions"]["objectClassify"]
    assert (env["SOURCE_BUCKETS"], env["RESULTS_BUCKET"]) == (oc["sourceBuckets"], oc["resultsBucket"])
    monkeypatch.setenv("UPLOADS_BUCKET", "team-a-uploads")
    env = load_stack(stack).functions["object-classify"].environment
    assert [env[k] for k in buckets] == ["team-a-uploads"] * 2
    assert "export UPLOADS_BUCKET=" in DOC.read_text().split("faas-cli up -f stack.yml", 1)[0]
    handle = s3_server.S3Handle("http://127.0.0.1:1", "local-bucket", "us-east-1", "id", "secret", 0, "")
    local = {**env, **s3_server.function_env(handle)}  # the platform's override wins (Fleet.function_env)
    assert [local[k] for k in buckets] == ["local-bucket"] * 2


def test_workload_identity_snippet_renders(tmp_path):
    """The documented values for an IAM-role ServiceAccount give a chart that runs Triton as it."""
    text = DOC.read_text()
    snippet = next(body for lang, body in code_blocks(text) if lang == "yaml" and "serviceAccountName" in body)
    values = tmp_path / "wi.yaml"
    values.write_text(snippet)
    objs = render_chart([CHART_DIR / "values-gpu.yaml", values])
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    name = yaml.safe_load(snippet)["modelRepository"]["s3"]["serviceAccountName"]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == name
    assert f"create serviceaccount {name}" in text and "eks.amazonaws.com/role-arn=" in text


def wake_budget(text: str) -> tuple[list[int], int]:
    section = text.split("### A wake from a GPU node pool scaled to zero", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| \**(\d+) s\** \|$", section, re.MULTILINE)
    steps = [int(s) for name, s in rows if "total" not in name]
    (total,) = [int(s) for name, s in rows if "total" in name]
    return steps, total


def test_the_progress_deadline_covers_the_documented_wake():
    """The GPU profile's progress deadline is at least the wake the docs estimate, step by step."""
    text = DOC.read_text()
    steps, total = wake_budget(text)
    assert len(steps) >= 4 and sum(steps) == total
    objs = render_chart([CHART_DIR / "values-gpu.yaml", MODELS_BUCKET])
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    deadline = int(isvc["metadata"]["annotations"]["serving.knative.dev/progress-deadline"].rstrip("s"))
    assert deadline >= total, f"progress deadline {deadline}s < the documented wake {total}s"
    assert f"`timeouts.tritonProgressDeadlineSeconds`, {deadline} s" in text
    cold = yaml.safe_load((CHART_DIR / "values-gpu.yaml").read_text())["timeouts"]["tritonColdStartSeconds"]
    assert f"up to {cold} s" in text and "503 with\n`Retry-After: 5`" in text


@pytest.mark.parametrize(
    "claim",
    [
        "`MaxReplicas = 5`",  # faas-netes pkg/handlers/replica_reader.go
        "`--store memory`",  # faas-netes chart 15.0.6 templates/nats-dep.yaml (CE)
        "`functions.mode=knative`",
    ],
)
def test_what_ce_cannot_do_is_stated(claim):
    section = DOC.read_text().split("## What OpenFaaS CE cannot do", 1)[1].split("\n## ", 1)[0]
    assert claim in section
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["functions"]
    assert int(values["labels"]["com.openfaas.scale.max"]) <= 5 and values["mode"] == "none"
    knative = yaml.safe_load((CHART_DIR / "values-knative.yaml").read_text())["functions"]
    # the documented way to scale functions to zero (tests/test_k8s_scaling.py: the annotations it renders)
    assert knative["mode"] == "knative" and knative["labels"]["com.openfaas.scale.zero"] == "true"
