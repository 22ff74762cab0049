#!/usr/bin/env bash
# Install Serverless AI and its prerequisites on a Kubernetes cluster, with pinned versions:
# cert-manager, Knative Serving + Kourier, KServe, OpenFaaS CE, optionally the NVIDIA GPU
# operator, then charts/serverless-ai with a values profile.
#
# Needs: the repository's .venv (`make setup`: its Python, and kubectl and helm in .venv/bin),
# curl, and for --profile kind also kind and docker. Run from anywhere; paths are relative to the
# repository.
set -euo pipefail

# ---- pinned versions (bump deliberately, together) ------------------------------------------
# These are the versions whose CRDs the chart is validated against: k8s/fetch-crds.sh lists the
# same tags, and tests/test_k8s_stack.py fails when the two drift apart.
KIND_VERSION="v0.30.0"                 # KServe v0.20.0's own kserve-deps.env pins kind v0.30.0
                                       # (its node image is pinned in k8s/kind/cluster.yaml)
CERT_MANAGER_VERSION="v1.17.0"         # kserve v0.20.0 kserve-deps.env CERT_MANAGER_VERSION
KNATIVE_VERSION="knative-v1.23.0"      # serving and net-kourier share release tags
KSERVE_VERSION="v0.20.0"
OPENFAAS_CHART_VERSION="15.0.6"        # deploys faas-netes 0.18.17 (chart/openfaas/values.yaml)
GPU_OPERATOR_VERSION="v25.10.1"        # https://helm.ngc.nvidia.com/nvidia; its default driver
                                       # (580.105.08) runs TRITON_IMAGE's CUDA 13.0: minimum driver
                                       # 580 (tests/test_k8s_driver_pins.py has the sources)
REGISTRY_IMAGE="registry:2.8.3"        # kind's local registry (kind docs: local-registry.md)
TRITON_IMAGE="nvcr.io/nvidia/tritonserver:25.09-py3"   # = values.yaml triton.image (test-checked)
# The kind profile's CPU Triton, built here from k8s/images/triton-cpu (= values-kind.yaml
# triton.image, test-checked). TRITON_BASE_IMAGE overrides its base (default debian:bookworm-slim).
KIND_TRITON_IMAGE="kind.local/serverless-ai/tritonserver-cpu:2.51.0"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO/charts/serverless-ai"
NAMESPACE="serverless-ai"
RELEASE="serverless-ai"
PROFILE="kind"
GPU_OPERATOR=0
GPU_OPERATOR_DRIVER=true  # false: the nodes' own driver (--gpu-operator-driver=false)
SKIP_PREREQS=0
DRY_RUN=0
USER_VALUES=()  # -f FILE pairs from --values, after the profile's values
# kind's local registry: the host pushes to localhost:5001; inside the cluster the same registry is
# kind-registry.local:5000 (a Docker network alias that pods resolve through kind's DNS set-up, and
# a *.local name, so faas-netes' anonymous-pull check talks plain HTTP to it).
KIND_PUSH_REGISTRY="localhost:5001"
KIND_CLUSTER_REGISTRY="kind-registry.local:5000"
# Prefer the tools `sai tools install` placed in the repository's venv; its Python (`make setup`)
# edits KServe's manifest.
export PATH="$REPO/.venv/bin:$PATH"
PYTHON="$REPO/.venv/bin/python"

usage() {
  cat <<USAGE
Usage: k8s/bootstrap.sh [--profile kind|gpu|knative] [--values FILE]... [--gpu-operator]
                        [--gpu-operator-driver=false] [--skip-prereqs] [--dry-run]

  --profile P      values profile: charts/serverless-ai/values-P.yaml and k8s/overlays/...
                   kind: creates a kind cluster (CPU) with a local registry ($KIND_PUSH_REGISTRY),
                         random MinIO credentials and a MinIO user for the functions
                   gpu: an existing GPU cluster; the Secrets in docs/kubernetes.md must exist
                   knative: like gpu, without KServe (Triton as a plain Knative Service)
  --values, -f FILE  your values file (repeatable), given to helm after the profile's, so yours
                   win: e.g. modelRepository.s3.uri, your bucket. The chart's timeouts in it also
                   set the OpenFaaS gateway's.
  --gpu-operator   also install the NVIDIA GPU operator $GPU_OPERATOR_VERSION
                   (default driver 580.105.08; Triton's CUDA 13.0 needs a driver >= 580)
  --gpu-operator-driver=false
                   with --gpu-operator, on node images that already have a driver (e.g. EKS's
                   accelerated AMIs): the operator installs no driver of its own
                   (driver.enabled=false) and uses the node's, which must be >= 580 too
  --skip-prereqs   only (re)install the serverless-ai chart and cluster settings
  --dry-run        print the commands instead of running them (works without a cluster)
  -h, --help       this help

Pinned: kind $KIND_VERSION, cert-manager $CERT_MANAGER_VERSION,
Knative Serving + Kourier $KNATIVE_VERSION, KServe $KSERVE_VERSION, OpenFaaS chart
$OPENFAAS_CHART_VERSION, GPU operator $GPU_OPERATOR_VERSION.
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --values|-f)
      [ -f "${2:-}" ] || { echo "--values: no such file: ${2:-}" >&2; exit 2; }
      USER_VALUES+=(-f "$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
    --gpu-operator) GPU_OPERATOR=1; shift ;;
    --gpu-operator-driver=true|--gpu-operator-driver=false) GPU_OPERATOR_DRIVER="${1#*=}"; shift ;;
    --skip-prereqs) SKIP_PREREQS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$PROFILE" in kind|gpu|knative) ;; *) echo "unknown profile: $PROFILE" >&2; exit 2 ;; esac
if [ "$GPU_OPERATOR_DRIVER" = false ] && [ "$GPU_OPERATOR" = 0 ]; then
  echo "--gpu-operator-driver=false goes with --gpu-operator" >&2; exit 2
fi
if [ "$SKIP_PREREQS" = 0 ] && [ "$PROFILE" != knative ] && [ ! -x "$PYTHON" ]; then
  echo "no $PYTHON: run \`make setup\` first (the KServe step edits KServe's manifest with it)" >&2; exit 1
fi
VALUES="$CHART/values-$PROFILE.yaml"
OVERLAY="$REPO/k8s/overlays/$([ "$PROFILE" = kind ] && echo kind || echo gpu)"

run() {  # echo in dry-run mode, execute otherwise
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
apply_kserve() {  # URL of kserve.yaml: applied with our ingress settings in it (sai/k8s/kserve_ingress.py)
  local edit=("$PYTHON" -m sai.k8s.kserve_ingress disableIstioVirtualHost=true)
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ curl -fsSL %s | %s | kubectl apply --server-side --force-conflicts -f -\n' "$1" "${edit[*]}"; return
  fi
  curl -fsSL "$1" | "${edit[@]}" | kubectl apply --server-side --force-conflicts -f -
}
# Custom resources need their CRD Established before an apply that contains them: kubectl maps
# every object of a manifest before it applies any (kubectl kubernetes-1.34.5
# pkg/cmd/apply/apply.go, GetObjects then the apply loop) and fails on a kind it cannot map yet.
wait_established() {  # CRD names
  run kubectl wait --for=condition=Established --timeout=120s "${@/#/crd/}"
}
log() { printf '\n==> %s\n' "$*" >&2; }
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The timeouts come from the chart (one source of truth): render its timeouts ConfigMap for this
# profile and read the numbers, so the gateway always waits longer than the functions.
chart_timeout() {
  helm template "$RELEASE" "$CHART" -n "$NAMESPACE" -f "$VALUES" ${USER_VALUES[@]+"${USER_VALUES[@]}"} \
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
  log "kind cluster (kind $KIND_VERSION) with a local registry"
  # 1. The registry (kind docs, local-registry.md: kind-with-registry.sh), published on loopback only.
  if [ "$DRY_RUN" = 1 ] || [ "$(docker inspect -f '{{.State.Running}}' kind-registry 2>/dev/null || true)" != true ]; then
    run docker run -d --restart=always -p "127.0.0.1:5001:5000" --network bridge --name kind-registry "$REGISTRY_IMAGE"
  fi
  # 2. The cluster: containerd reads registry hosts from /etc/containerd/certs.d (k8s/kind/cluster.yaml).
  if [ "$DRY_RUN" = 1 ] || ! kind get clusters 2>/dev/null | grep -qx serverless-ai; then
    local cfg; cfg="$(mktemp)"
    sed "s#__REPO__#$REPO#" "$REPO/k8s/kind/cluster.yaml" >"$cfg"
    run kind create cluster --config "$cfg" --wait 120s
  fi
  # 3. Both registry names resolve to the registry container on every node.
  local node host
  for node in $(if [ "$DRY_RUN" = 1 ]; then echo serverless-ai-control-plane; else kind get nodes --name serverless-ai; fi); do
    for host in "$KIND_PUSH_REGISTRY" "$KIND_CLUSTER_REGISTRY"; do
      run docker exec "$node" mkdir -p "/etc/containerd/certs.d/$host"
      if [ "$DRY_RUN" = 1 ]; then echo "+ docker exec $node: /etc/containerd/certs.d/$host/hosts.toml -> http://$KIND_CLUSTER_REGISTRY"; continue; fi
      printf '[host."http://%s"]\n' "$KIND_CLUSTER_REGISTRY" |
        docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/$host/hosts.toml"
    done
  done
  # 4. On the kind network under the in-cluster name (pods reach Docker's DNS through kind's node
  #    entrypoint, images/base/files/usr/local/bin/entrypoint: enable_network_magic).
  if [ "$DRY_RUN" = 1 ] || [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' kind-registry)" = null ]; then
    run docker network connect --alias "${KIND_CLUSTER_REGISTRY%:*}" kind kind-registry
  fi
  # 5. The CPU Triton image (~0.5 GB), built here and loaded into the node (pullPolicy Never). The
  #    GPU profile's NGC image is ~15 GB unpacked, and `kind load` keeps several copies of an image
  #    at once (kind v0.30.0: a `docker save` tar, then `ctr images import` into the node), more
  #    than a hosted runner's disk (docs/kubernetes.md, "The kind job's budget").
  run "$REPO/k8s/images/triton-cpu.sh" --tag "$KIND_TRITON_IMAGE" ${TRITON_BASE_IMAGE:+--base "$TRITON_BASE_IMAGE"}
  run kind load docker-image "$KIND_TRITON_IMAGE" --name serverless-ai
}

install_cert_manager() {
  log "cert-manager $CERT_MANAGER_VERSION"
  run kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  run kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
}

install_knative() {
  log "Knative Serving $KNATIVE_VERSION + Kourier"
  run kubectl apply -f "https://github.com/knative/serving/releases/download/$KNATIVE_VERSION/serving-crds.yaml"
  # serving-core.yaml holds resources of two of those kinds: Image queue-proxy (serving
  # knative-v1.23.0 config/core/999-cache.yaml) and Certificate routing-serving-certs
  # (config/core/300-knativecertificate.yaml).
  wait_established images.caching.internal.knative.dev certificates.networking.internal.knative.dev
  run kubectl apply -f "https://github.com/knative/serving/releases/download/$KNATIVE_VERSION/serving-core.yaml"
  run kubectl apply -f "https://github.com/knative-extensions/net-kourier/releases/download/$KNATIVE_VERSION/kourier.yaml"
  if [ "$PROFILE" = kind ]; then
    # Kourier's gateway and controller request 200m each (net-kourier knative-v1.23.0
    # config/300-gateway.yaml, 300-controller.yaml); the kind node cannot spare that
    # (tests/test_kind_budget.py). Client-side `kubectl apply` keeps these on a re-run.
    run kubectl -n kourier-system set resources deployment/3scale-kourier-gateway -c kourier-gateway --requests=cpu=100m
    run kubectl -n knative-serving set resources deployment/net-kourier-controller -c controller --requests=cpu=50m
  fi
  run kubectl -n knative-serving wait --for=condition=Available deployment --all --timeout=300s
  run kubectl -n kourier-system wait --for=condition=Available deployment --all --timeout=300s
}

install_kserve() {
  log "KServe $KSERVE_VERSION (Serverless mode)"
  local base="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  # The release's CRDs first (kserve-crds.yaml: kserve v0.20.0 hack/release/generate-install.sh,
  # `kustomize build config/crd/full`): kserve.yaml holds the ClusterStorageContainer "default"
  # (config/storagecontainers/default.yaml) beside its CRD, and would fail on a fresh cluster.
  run kubectl apply --server-side --force-conflicts -f "$base/kserve-crds.yaml"
  wait_established clusterstoragecontainers.serving.kserve.io
  # With Kourier instead of Istio, KServe must not create Istio VirtualServices
  # (config/configmap/inferenceservice.yaml at v0.20.0: ingress.disableIstioVirtualHost). The key is
  # set in the manifest itself, so the controller never reads upstream's Istio setting, not even
  # for a moment on a re-run. --force-conflicts: installs by an older bootstrap left the key to the
  # serverless-ai field manager.
  apply_kserve "$base/kserve.yaml"
  run kubectl -n kserve wait --for=condition=Available deployment --all --timeout=300s
  # Not applied: the release's kserve-cluster-resources.yaml. It holds only upstream's
  # ClusterServingRuntimes and LLMInferenceServiceConfigs (kserve v0.20.0 config/clusterresources:
  # ../runtimes, ../llmisvcconfig), and the chart brings its own ServingRuntime, named in the InferenceService
  # and found in its namespace before any cluster runtime (pkg/controller/v1beta1/inferenceservice/
  # utils/utils.go GetServingRuntime). What the s3:// storage initializer matches, the
  # ClusterStorageContainer "default", is in kserve.yaml. Skipping it also skips a race: those 24
  # objects pass KServe's failurePolicy=Fail webhooks, whose endpoints may lag the Available
  # deployments (upstream's installer sleeps, then retries 3 x 5 s:
  # hack/setup/quick-install/kserve-knative-mode-full-install-with-manifests.sh).
}

install_openfaas() {
  # The gateway is ClusterIP everywhere but kind, where its NodePort is published on the host's
  # loopback only (k8s/kind/cluster.yaml). Expose it through an ingress with auth (docs/kubernetes.md).
  local service_type=ClusterIP requests=()
  if [ "$PROFILE" = kind ]; then
    service_type=NodePort
    # Smaller CPU requests on the kind node (the chart's defaults: 500m; tests/test_kind_budget.py).
    requests=(--set gateway.resources.requests.cpu=50m --set faasnetes.resources.requests.cpu=50m
      --set queueWorker.resources.requests.cpu=25m --set nats.resources.requests.cpu=25m
      --set prometheus.resources.requests.cpu=25m --set alertmanager.resources.requests.cpu=25m)
  fi
  log "OpenFaaS CE chart $OPENFAAS_CHART_VERSION (gateway upstream timeout ${GATEWAY_TIMEOUT}s, $service_type)"
  # Value names: faas-netes chart/openfaas/values.yaml at chart 15.0.6 (tests/test_k8s_stack.py
  # keeps this list to values that chart has). Function images are always pulled in CE
  # (faas-netes pkg/handlers/deploy.go: PullAlways), so they must come from a registry.
  run helm upgrade --install openfaas openfaas \
    --repo https://openfaas.github.io/faas-netes --version "$OPENFAAS_CHART_VERSION" \
    --namespace openfaas \
    --set functionNamespace=openfaas-fn \
    --set generateBasicAuth=true \
    --set serviceType="$service_type" \
    --set gateway.upstreamTimeout="${GATEWAY_TIMEOUT}s" \
    --set gateway.readTimeout="${GATEWAY_SERVER_TIMEOUT}s" \
    --set gateway.writeTimeout="${GATEWAY_SERVER_TIMEOUT}s" \
    --set queueWorker.ackWait="${GATEWAY_SERVER_TIMEOUT}s" \
    ${requests[@]+"${requests[@]}"} \
    --wait --timeout 10m
}

install_gpu_operator() {
  # driver.enabled (gpu-operator v25.10.1 deployments/gpu-operator/values.yaml) deploys the
  # operator's driver DaemonSet, which must not run beside a driver the node image ships; without
  # it the operator's validator uses the host's (cmd/nvidia-validator/main.go validateHostDriver:
  # /usr/bin/nvidia-smi on the host).
  local driver=()
  [ "$GPU_OPERATOR_DRIVER" = false ] && driver=(--set driver.enabled=false)
  log "NVIDIA GPU operator $GPU_OPERATOR_VERSION ($([ "$GPU_OPERATOR_DRIVER" = false ] && echo "the nodes' own driver" || echo "its driver"))"
  run helm upgrade --install gpu-operator gpu-operator \
    --repo https://helm.ngc.nvidia.com/nvidia --version "$GPU_OPERATOR_VERSION" \
    --namespace gpu-operator --create-namespace ${driver[@]+"${driver[@]}"} --wait --timeout 15m
}

create_secret() {  # namespace name key=value... (only when missing: re-runs keep credentials)
  local ns="$1" name="$2"; shift 2
  if [ "$DRY_RUN" = 1 ]; then echo "+ kubectl -n $ns create secret generic $name ($*)" | sed 's/=[^ )]*/=…/g'; return; fi
  kubectl -n "$ns" get secret "$name" >/dev/null 2>&1 && return
  local args=() kv
  for kv in "$@"; do args+=("--from-literal=$kv"); done
  kubectl -n "$ns" create secret generic "$name" "${args[@]}"
}

kind_secrets() {
  # Random credentials: MinIO's root user (only the set-up Job uses it) and a separate MinIO user
  # for the functions, limited by the set-up Job to the uploads bucket's prefixes.
  log "secrets (kind: random MinIO credentials, a MinIO user for the functions)"
  local fn_user fn_pass
  fn_user="fn-$(random_hex 6)"; fn_pass="$(random_hex 24)"
  if [ "$DRY_RUN" = 0 ] && kubectl -n "$NAMESPACE" get secret serverless-ai-minio-functions >/dev/null 2>&1; then
    fn_user="$(kubectl -n "$NAMESPACE" get secret serverless-ai-minio-functions -o jsonpath='{.data.accessKey}' | base64 -d)"
    fn_pass="$(kubectl -n "$NAMESPACE" get secret serverless-ai-minio-functions -o jsonpath='{.data.secretKey}' | base64 -d)"
  fi
  create_secret "$NAMESPACE" serverless-ai-minio rootUser="sai-$(random_hex 6)" rootPassword="$(random_hex 24)"
  create_secret "$NAMESPACE" serverless-ai-minio-functions accessKey="$fn_user" secretKey="$fn_pass"
  create_secret openfaas-fn s3-access-key-id s3-access-key-id="$fn_user"
  create_secret openfaas-fn s3-secret-access-key s3-secret-access-key="$fn_pass"
}

check_secrets() {
  # The model store's Secret (or workload-identity ServiceAccount) is checked by the chart itself at
  # install time, with the fix in its message; object-classify's keys are faas-cli's business.
  log "checking the Secrets object-classify expects (namespace openfaas-fn)"
  if [ "$DRY_RUN" = 1 ]; then echo "+ kubectl -n openfaas-fn get secret s3-access-key-id s3-secret-access-key"; return; fi
  kubectl -n openfaas-fn get secret s3-access-key-id s3-secret-access-key >/dev/null ||
    { echo "create the Secrets listed in docs/kubernetes.md first" >&2; exit 1; }
}

install_chart() {
  log "cluster settings ($OVERLAY) and the serverless-ai chart ($PROFILE profile)"
  run kubectl apply --server-side --field-manager=serverless-ai --force-conflicts -k "$OVERLAY"
  if [ "$PROFILE" = kind ]; then kind_secrets; else check_secrets; fi
  # The chart itself refuses to install when Knative's config-features lacks a flag it needs.
  run helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" -f "$VALUES" ${USER_VALUES[@]+"${USER_VALUES[@]}"} \
    --wait --timeout 10m
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
if [ "$PROFILE" = kind ]; then
  log "done. Functions: k8s/e2e-kind.sh (builds, pushes to $KIND_PUSH_REGISTRY, deploys as $KIND_CLUSTER_REGISTRY); gateway http://127.0.0.1:8080"
else
  log "done. Functions (OpenFaaS CE): port-forward the gateway, faas-cli login, then REGISTRY=<your registry> faas-cli up -f stack.yml (docs/kubernetes.md, step 4)"
fi
