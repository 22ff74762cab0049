#!/usr/bin/env bash
# End-to-end check on the kind cluster made by `k8s/bootstrap.sh --profile kind`: build the
# functions with faas-cli, push them to the cluster's local registry, deploy them to OpenFaaS CE,
# then run the pytest e2e suite (tests/e2e): classification, text, MinIO upload, async callback,
# scale to zero within the window, the timed wake-up, a bad request.
#   k8s/e2e-kind.sh [--help]
# Needs: docker, kind, kubectl, faas-cli, .venv with the project and its cluster extra (make setup).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="$REPO/.venv/bin:$PATH"
GATEWAY="http://127.0.0.1:8080"   # k8s/kind/cluster.yaml maps the gateway NodePort here
NAMESPACE="serverless-ai"
TRITON_PODS="app.kubernetes.io/component=triton"
# One registry, two names (k8s/bootstrap.sh): the host pushes to localhost:5001; faas-netes checks
# and the kubelet pulls kind-registry.local:5000 from inside the cluster. faas-cli expands
# ${REGISTRY} in stack.yml.
PUSH_REGISTRY="localhost:5001"
CLUSTER_REGISTRY="kind-registry.local:5000"

faas-cli template store pull python3-http-debian
REGISTRY="$PUSH_REGISTRY" faas-cli build -f stack.yml
REGISTRY="$PUSH_REGISTRY" faas-cli push -f stack.yml

kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 --decode |
  faas-cli login --gateway "$GATEWAY" --username admin --password-stdin
# Six functions at stack.yml's 100m would not fit the node's CPU budget (tests/test_kind_budget.py).
FUNCTION_CPU_REQUEST=25m REGISTRY="$CLUSTER_REGISTRY" faas-cli deploy -f stack.yml --gateway "$GATEWAY"
for fn in $(python3 -c 'import yaml; print(" ".join(yaml.safe_load(open("stack.yml"))["functions"]))'); do
  kubectl -n openfaas-fn rollout status "deploy/$fn" --timeout=10m
done
kubectl -n "$NAMESPACE" get inferenceservice

# The checks are the pytest suite in tests/e2e (the same library code as `sai cluster`: the
# kubernetes and kserve SDKs), with this cluster's kubeconfig passed explicitly:
#   1 ISVC Ready; 2 image-classify through the gateway (/function/image-classify) returns the cat;
#   3 text-sentiment answers; 4 an upload to MinIO produces its result object; 5 an async call
#   reaches a callback receiver in the cluster; 6 Triton scales to zero within the configured
#   window; 7 the next request wakes it (cold start timed); 8 a bad request gets 4xx JSON.
KUBECONFIG_FILE="$(mktemp)"
REPORT="$(mktemp)"
kind get kubeconfig --name serverless-ai >"$KUBECONFIG_FILE"
"$REPO/.venv/bin/sai" cluster status --kubeconfig "$KUBECONFIG_FILE" || true
SAI_E2E_KUBECONFIG="$KUBECONFIG_FILE" SAI_E2E_GATEWAY="$GATEWAY" SAI_E2E_NAMESPACE="$NAMESPACE" SAI_E2E_REPORT="$REPORT" \
  "$REPO/.venv/bin/python" -m pytest tests/e2e -v -s -x -p no:cacheprovider
"$REPO/.venv/bin/sai" cluster status --kubeconfig "$KUBECONFIG_FILE" || true

# The figures users of scale to zero care about, from the suite's report.
"$REPO/.venv/bin/python" - "$REPORT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"Triton scaled to zero after {r['scaled_to_zero_after_s']:.0f}s idle "
      f"(window {r['scale_to_zero_window']['after_last_request_s']:g}s after the last request)")
c = r["cold_start"]
print(f"cold start: the request that woke Triton from zero ({c['url']}) took {c['time_to_first_byte_s']:.1f}s to the first byte")
for p in c["phases"]:
    print(f"  +{p['seconds']:7.1f}s  {p['phase']:<18} {p['detail']}")
PY
