#!/usr/bin/env bash
# End-to-end check on the kind cluster made by `k8s/bootstrap.sh --profile kind`: build the
# functions with faas-cli, push them to the cluster's local registry, deploy them to OpenFaaS CE,
# classify a photo through the gateway, then prove scale to zero: wait until Triton has no pod,
# and time the request that wakes it.
#   k8s/e2e-kind.sh [--help]
# Needs: docker, kubectl, faas-cli, python3 with the project installed (for the test photo).
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
REGISTRY="$CLUSTER_REGISTRY" faas-cli deploy -f stack.yml --gateway "$GATEWAY"
for fn in $(python3 -c 'import yaml; print(" ".join(yaml.safe_load(open("stack.yml"))["functions"]))'); do
  kubectl -n openfaas-fn rollout status "deploy/$fn" --timeout=10m
done
kubectl -n "$NAMESPACE" get inferenceservice

# A real photo (scikit-image's Chelsea the cat) through gateway -> function -> Triton.
python3 -c 'import io, skimage.data, PIL.Image as I; b=io.BytesIO(); I.fromarray(skimage.data.chelsea()).save(b, "JPEG"); open("/tmp/cat.jpg","wb").write(b.getvalue())'
classify() {
  curl -fsS --max-time 600 -H 'Content-Type: image/jpeg' --data-binary @/tmp/cat.jpg \
    "$GATEWAY/function/image-classify" -o /tmp/classify.json -w '%{time_total}'
}
check_cat() {
  python3 - <<'PY'
import json
result = json.load(open("/tmp/classify.json"))
labels = [p["label"].lower() for p in result["predictions"]]
assert any("cat" in label for label in labels[:3]), labels
print("image-classify through OpenFaaS and Triton on kind: ok", labels[:3])
PY
}
echo "warm request: $(classify)s"; check_cat

# Scale to zero: values-kind.yaml keeps an idle Triton 1m (scaleToZeroRetention), then Knative's
# stable window and grace period apply (k8s/overlays/kind). Wait until no Triton pod is left.
echo "waiting for Triton to scale to zero..."
start=$(date +%s)
until [ "$(kubectl -n "$NAMESPACE" get pods -l "$TRITON_PODS" --no-headers 2>/dev/null | wc -l)" = 0 ]; do
  if [ $(( $(date +%s) - start )) -gt 600 ]; then
    kubectl -n "$NAMESPACE" get pods -l "$TRITON_PODS"; echo "Triton did not scale to zero in 10 min" >&2; exit 1
  fi
  sleep 10
done
echo "Triton scaled to zero after $(( $(date +%s) - start ))s idle"

# The next request wakes it: the Knative activator holds it while a pod starts and loads models.
cold="$(classify)"
check_cat
pods="$(kubectl -n "$NAMESPACE" get pods -l "$TRITON_PODS" --no-headers | wc -l)"
[ "$pods" -ge 1 ] || { echo "a request answered but no Triton pod exists" >&2; exit 1; }
echo "cold start: the request that woke Triton from zero took ${cold}s"
