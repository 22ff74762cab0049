#!/usr/bin/env bash
# End-to-end check on the kind cluster made by `k8s/bootstrap.sh --profile kind`: build the
# functions with faas-cli, load the images into kind, deploy them to OpenFaaS CE, wait until they
# are ready, then classify a photo through the gateway (which wakes Triton from zero if needed).
#   k8s/e2e-kind.sh [--help]
# Needs: docker, kind, kubectl, faas-cli, python3 with the project installed (for the test photo).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PATH="$REPO/.venv/bin:$PATH"
GATEWAY="http://127.0.0.1:8080"   # k8s/kind/cluster.yaml maps the gateway NodePort here
CLUSTER="serverless-ai"

faas-cli template store pull python3-http-debian
faas-cli build -f stack.yml
for image in $(python3 -c 'import yaml; print(" ".join(f["image"] for f in yaml.safe_load(open("stack.yml"))["functions"].values()))'); do
  kind load docker-image "$image" --name "$CLUSTER"
done

kubectl -n openfaas get secret basic-auth -o jsonpath='{.data.basic-auth-password}' | base64 --decode |
  faas-cli login --gateway "$GATEWAY" --username admin --password-stdin
faas-cli deploy -f stack.yml --gateway "$GATEWAY"
for fn in $(python3 -c 'import yaml; print(" ".join(yaml.safe_load(open("stack.yml"))["functions"]))'); do
  kubectl -n openfaas-fn rollout status "deploy/$fn" --timeout=10m
done
kubectl -n serverless-ai get inferenceservice

# A real photo (scikit-image's Chelsea the cat) through gateway -> function -> Triton.
python3 -c 'import io, skimage.data, PIL.Image as I; b=io.BytesIO(); I.fromarray(skimage.data.chelsea()).save(b, "JPEG"); open("/tmp/cat.jpg","wb").write(b.getvalue())'
curl -fsS --max-time 600 -H 'Content-Type: image/jpeg' --data-binary @/tmp/cat.jpg \
  "$GATEWAY/function/image-classify" | tee /tmp/classify.json
echo
python3 - <<'PY'
import json
result = json.load(open("/tmp/classify.json"))
labels = [p["label"].lower() for p in result["predictions"]]
assert any("cat" in label for label in labels[:3]), labels
print("image-classify through OpenFaaS and Triton on kind: ok", labels[:3])
PY
