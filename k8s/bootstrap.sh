#!/usr/bin/env bash
# Install Serverless AI and its prerequisites on a Kubernetes cluster, with pinned versions:
# cert-manager, Knative Serving + Kourier, KServe, OpenFaaS CE, optionally the NVIDIA GPU
# operator, then charts/serverless-ai with a values profile.
#
# Needs: kubectl, helm (`sai tools install` puts both in .venv/bin), and for --profile kind
# also kind and docker. Run from anywhere; paths are relative to the repository.
set -euo pipefail

# ---- pinned versions (bump deliberately, together) ------------------------------------------
KIND_VERSION="v0.29.0"                 # kind's node image is pinned in k8s/kind/cluster.yaml
CERT_MANAGER_VERSION="v1.17.2"
KNATIVE_VERSION="knative-v1.18.0"      # serving and net-kourier share release tags
KSERVE_VERSION="v0.15.2"
OPENFAAS_CHART_VERSION="14.2.124"      # https://openfaas.github.io/faas-netes (CE)
GPU_OPERATOR_VERSION="v25.3.0"         # https://helm.ngc.nvidia.com/nvidia

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO/charts/serverless-ai"
NAMESPACE="serverless-ai"
RELEASE="serverless-ai"
PROFILE="kind"
GPU_OPERATOR=0
SKIP_PREREQS=0
DRY_RUN=0
# Prefer the tools `sai tools install` placed in the repository's venv.
export PATH="$REPO/.venv/bin:$PATH"

usage() {
  cat <<EOF
Usage: k8s/bootstrap.sh [--profile kind|gpu|knative] [--gpu-operator] [--skip-prereqs] [--dry-run]

  --profile P      values profile: charts/serverless-ai/values-P.yaml and k8s/overlays/...
                   kind: creates a kind cluster (CPU), secrets with random MinIO credentials
                   gpu: an existing GPU cluster; the Secrets named in docs/kubernetes.md must exist
                   knative: like gpu, without KServe (Triton as a plain Knative Service)
  --gpu-operator   also install the NVIDIA GPU operator $GPU_OPERATOR_VERSION
  --skip-prereqs   only (re)install the serverless-ai chart and cluster settings
  --dry-run        print the commands instead of running them (works without a cluster)
  -h, --help       this help

Pinned: kind $KIND_VERSION, cert-manager $CERT_MANAGER_VERSION, Knative $KNATIVE_VERSION (+ Kourier),
KServe $KSERVE_VERSION, OpenFaaS chart $OPENFAAS_CHART_VERSION, GPU operator $GPU_OPERATOR_VERSION.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --gpu-operator) GPU_OPERATOR=1; shift ;;
    --skip-prereqs) SKIP_PREREQS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$PROFILE" in kind|gpu|knative) ;; *) echo "unknown profile: $PROFILE" >&2; exit 2 ;; esac
VALUES="$CHART/values-$PROFILE.yaml"
OVERLAY="$REPO/k8s/overlays/$([ "$PROFILE" = kind ] && echo kind || echo gpu)"

run() {  # echo in dry-run mode, execute otherwise
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
log() { printf '\n==> %s\n' "$*" >&2; }

# The timeouts come from the chart (one source of truth): render its timeouts ConfigMap for this
# profile and read the numbers, so the gateway always waits longer than the functions.
chart_timeout() {
  helm template "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$VALUES" \
    --show-only templates/timeouts-configmap.yaml |
    sed -n "s/^  $1: \"\([0-9]*\)\"$/\1/p"
}
GATEWAY_TIMEOUT="$(chart_timeout gatewayTimeoutSeconds)"
GATEWAY_SERVER_TIMEOUT="$(chart_timeout gatewayServerTimeoutSeconds)"
FUNCTION_TIMEOUT="$(chart_timeout functionTimeoutSeconds)"
[ -n "$GATEWAY_TIMEOUT" ] && [ -n "$GATEWAY_SERVER_TIMEOUT" ] || {
  echo "could not read timeouts from the chart" >&2; exit 1; }
echo "timeouts: function ${FUNCTION_TIMEOUT}s, gateway upstream ${GATEWAY_TIMEOUT}s, gateway server ${GATEWAY_SERVER_TIMEOUT}s"

create_kind_cluster() {
  log "kind cluster (kind $KIND_VERSION)"
  if [ "$DRY_RUN" = 0 ] && kind get clusters 2>/dev/null | grep -qx serverless-ai; then
    echo "kind cluster serverless-ai exists"; return
  fi
  local cfg; cfg="$(mktemp)"
  sed "s#__REPO__#$REPO#" "$REPO/k8s/kind/cluster.yaml" >"$cfg"
  run kind create cluster --config "$cfg" --wait 120s
}

install_cert_manager() {
  log "cert-manager $CERT_MANAGER_VERSION"
  run kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  run kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
}

install_knative() {
  log "Knative Serving $KNATIVE_VERSION + Kourier"
  local base="https://github.com/knative"
  run kubectl apply -f "$base/serving/releases/download/$KNATIVE_VERSION/serving-crds.yaml"
  run kubectl apply -f "$base/serving/releases/download/$KNATIVE_VERSION/serving-core.yaml"
  run kubectl apply -f "$base/net-kourier/releases/download/$KNATIVE_VERSION/kourier.yaml"
  run kubectl -n knative-serving wait --for=condition=Available deployment --all --timeout=300s
  run kubectl -n kourier-system wait --for=condition=Available deployment --all --timeout=300s
}

install_kserve() {
  log "KServe $KSERVE_VERSION (Serverless mode)"
  local base="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  run kubectl apply --server-side -f "$base/kserve.yaml"
  run kubectl -n kserve wait --for=condition=Available deployment --all --timeout=300s
  run kubectl apply --server-side -f "$base/kserve-cluster-resources.yaml"
  # With Kourier instead of Istio, KServe must not create Istio VirtualServices.
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ kubectl -n kserve patch configmap inferenceservice-config (ingress.disableIstioVirtualHost=true)"
  else
    local ingress
    ingress="$(kubectl -n kserve get configmap inferenceservice-config -o jsonpath='{.data.ingress}' |
      jq -c '.disableIstioVirtualHost = true')"
    kubectl -n kserve patch configmap inferenceservice-config --type merge \
      -p "$(jq -n --arg v "$ingress" '{data: {ingress: $v}}')"
  fi
}

install_openfaas() {
  log "OpenFaaS CE chart $OPENFAAS_CHART_VERSION (gateway upstream timeout ${GATEWAY_TIMEOUT}s)"
  run helm upgrade --install openfaas openfaas \
    --repo https://openfaas.github.io/faas-netes --version "$OPENFAAS_CHART_VERSION" \
    --namespace openfaas \
    --set functionNamespace=openfaas-fn \
    --set generateBasicAuth=true \
    --set gateway.upstreamTimeout="${GATEWAY_TIMEOUT}s" \
    --set gateway.readTimeout="${GATEWAY_SERVER_TIMEOUT}s" \
    --set gateway.writeTimeout="${GATEWAY_SERVER_TIMEOUT}s" \
    --set queueWorker.ackWait="${GATEWAY_SERVER_TIMEOUT}s" \
    --set faasnetes.imagePullPolicy=IfNotPresent \
    --wait --timeout 10m
}

install_gpu_operator() {
  log "NVIDIA GPU operator $GPU_OPERATOR_VERSION"
  run helm upgrade --install gpu-operator gpu-operator \
    --repo https://helm.ngc.nvidia.com/nvidia --version "$GPU_OPERATOR_VERSION" \
    --namespace gpu-operator --create-namespace --wait --timeout 15m
}

kind_secrets() {
  # Random credentials for the in-cluster MinIO, shared with object-classify's secrets.
  log "secrets (kind: random MinIO credentials)"
  if [ "$DRY_RUN" = 1 ]; then echo "+ kubectl create secret ... (serverless-ai-minio, s3-access-key-id, s3-secret-access-key)"; return; fi
  if ! kubectl -n "$NAMESPACE" get secret serverless-ai-minio >/dev/null 2>&1; then
    local user pass
    user="sai-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    pass="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    kubectl -n "$NAMESPACE" create secret generic serverless-ai-minio \
      --from-literal=rootUser="$user" --from-literal=rootPassword="$pass"
    kubectl -n openfaas-fn create secret generic s3-access-key-id --from-literal=s3-access-key-id="$user"
    kubectl -n openfaas-fn create secret generic s3-secret-access-key --from-literal=s3-secret-access-key="$pass"
  fi
}

check_secrets() {
  log "checking the Secrets the $PROFILE profile expects"
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ kubectl get secret serverless-ai-models-s3 s3-access-key-id s3-secret-access-key"; return
  fi
  local missing=0
  kubectl -n "$NAMESPACE" get secret serverless-ai-models-s3 >/dev/null || missing=1
  kubectl -n openfaas-fn get secret s3-access-key-id s3-secret-access-key >/dev/null || missing=1
  [ "$missing" = 0 ] || { echo "create the Secrets listed in docs/kubernetes.md first" >&2; exit 1; }
}

install_chart() {
  log "cluster settings ($OVERLAY) and the serverless-ai chart ($PROFILE profile)"
  run kubectl apply --server-side --field-manager=serverless-ai --force-conflicts -k "$OVERLAY"
  if [ "$PROFILE" = kind ]; then kind_secrets; else check_secrets; fi
  run helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$VALUES" --wait --timeout 10m
  if [ "$PROFILE" = knative ]; then
    run kubectl -n "$NAMESPACE" wait --for=condition=Ready ksvc --all --timeout=15m
  else
    run kubectl -n "$NAMESPACE" wait --for=condition=Ready inferenceservice --all --timeout=15m
  fi
}

if [ "$SKIP_PREREQS" = 0 ]; then
  if [ "$PROFILE" = kind ]; then create_kind_cluster; fi
  install_cert_manager
  install_knative
  # Namespaces and Knative settings before anything lands in them.
  run kubectl apply --server-side --field-manager=serverless-ai --force-conflicts -k "$OVERLAY"
  if [ "$PROFILE" != knative ]; then install_kserve; fi
  install_openfaas
  if [ "$GPU_OPERATOR" = 1 ]; then install_gpu_operator; fi
fi
install_chart
log "done. Functions: faas-cli deploy -f stack.yml (OpenFaaS CE), gateway http://127.0.0.1:8080 on kind"
