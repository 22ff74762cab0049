#!/usr/bin/env bash
# Download the upstream CRDs the chart tests validate custom resources against, at the same
# commits as the copies in ../shared/crds (see its README), for CI machines without that folder.
#   k8s/fetch-crds.sh [DEST]    (default: $SAI_CRDS_DIR, else ../shared/crds beside the repository)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${SAI_CRDS_DIR:-$REPO/../shared/crds}}"
mkdir -p "$DEST"

# file name in DEST | GitHub repository | commit | path in the repository
CRDS="
kserve.serving.kserve.io_inferenceservices.yaml|kserve/kserve|aaac4e294|config/crd/full/serving.kserve.io_inferenceservices.yaml
kserve.serving.kserve.io_servingruntimes.yaml|kserve/kserve|aaac4e294|config/crd/full/serving.kserve.io_servingruntimes.yaml
kserve.serving.kserve.io_clusterservingruntimes.yaml|kserve/kserve|aaac4e294|config/crd/full/serving.kserve.io_clusterservingruntimes.yaml
kserve.serving.kserve.io_localmodelcaches.yaml|kserve/kserve|aaac4e294|config/crd/full/localmodel/serving.kserve.io_localmodelcaches.yaml
kserve.serving.kserve.io_localmodelnamespacecaches.yaml|kserve/kserve|aaac4e294|config/crd/full/localmodel/serving.kserve.io_localmodelnamespacecaches.yaml
kserve.serving.kserve.io_localmodelnodegroups.yaml|kserve/kserve|aaac4e294|config/crd/full/localmodel/serving.kserve.io_localmodelnodegroups.yaml
kserve.serving.kserve.io_localmodelnodes.yaml|kserve/kserve|aaac4e294|config/crd/full/localmodel/serving.kserve.io_localmodelnodes.yaml
knative.serving.knative.dev_services.yaml|knative/serving|98e5ef90aa|config/core/300-resources/service.yaml
openfaas.openfaas.com_functions.yaml|openfaas/faas-netes|662ce9ce|artifacts/crds/openfaas.com_functions.yaml
monitoring.coreos.com_servicemonitors.yaml|prometheus-operator/prometheus-operator|6adcebc50|example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
monitoring.coreos.com_podmonitors.yaml|prometheus-operator/prometheus-operator|6adcebc50|example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml
"

echo "$CRDS" | while IFS='|' read -r name repo commit path; do
  [ -n "$name" ] || continue
  if [ -s "$DEST/$name" ]; then echo "have $name"; continue; fi
  echo "get  $name ($repo@$commit)"
  curl -fsSL --retry 3 -o "$DEST/$name" "https://github.com/$repo/raw/$commit/$path"
done
