#!/usr/bin/env bash
# Download the upstream CRDs the chart tests validate custom resources against, at the release
# tags k8s/bootstrap.sh installs, and check each file's sha256 (the same files as ../shared/crds).
#   k8s/fetch-crds.sh [DEST]    (default: $SAI_CRDS_DIR, else ../shared/crds beside the repository)
# tests/test_k8s_stack.py checks that these tags equal the bootstrap's pins and that the CRDs in
# use have these sums, so validation always speaks about the versions that get installed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${SAI_CRDS_DIR:-$REPO/../shared/crds}}"
mkdir -p "$DEST"

# file name in DEST | GitHub repository | tag (or commit) | path in the repository | sha256
# faas-netes 0.18.17 is what OpenFaaS chart 15.0.6 deploys (its values.yaml: faas-netes:0.18.17).
# prometheus-operator is not installed by the bootstrap; commit 6adcebc5 (v0.93.0 + 24 commits)
# holds the same two CRD files, byte for byte, as its tag v0.93.0. Refs are tags or full SHAs.
CRDS="
kserve.serving.kserve.io_inferenceservices.yaml|kserve/kserve|v0.20.0|config/crd/full/serving.kserve.io_inferenceservices.yaml|57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff
kserve.serving.kserve.io_servingruntimes.yaml|kserve/kserve|v0.20.0|config/crd/full/serving.kserve.io_servingruntimes.yaml|380a3e1e1444cef9b8b88819596692728868205a2147dc66423be469a4a7bbb1
kserve.serving.kserve.io_clusterservingruntimes.yaml|kserve/kserve|v0.20.0|config/crd/full/serving.kserve.io_clusterservingruntimes.yaml|c6f6bbb1b4b11afd1e38bd6d7255a8795b86efa2b7d14946ccff9d23592e6846
kserve.serving.kserve.io_localmodelcaches.yaml|kserve/kserve|v0.20.0|config/crd/full/localmodel/serving.kserve.io_localmodelcaches.yaml|51d10e565a118af7da31250e99d6e8ff59bdc9f0e9fb4e4d1c1c3e2eb591bdef
kserve.serving.kserve.io_localmodelnamespacecaches.yaml|kserve/kserve|v0.20.0|config/crd/full/localmodel/serving.kserve.io_localmodelnamespacecaches.yaml|bb8068a6f8ec9e48719429db76441dae23ee09866d57cd4354131b759f27d186
kserve.serving.kserve.io_localmodelnodegroups.yaml|kserve/kserve|v0.20.0|config/crd/full/localmodel/serving.kserve.io_localmodelnodegroups.yaml|189a262754e7f07e1ce34ef44352aaf75e755cacdf45e710a4dcab29e0751b45
kserve.serving.kserve.io_localmodelnodes.yaml|kserve/kserve|v0.20.0|config/crd/full/localmodel/serving.kserve.io_localmodelnodes.yaml|32bd25b665a3fb074128dd2c4186943760b7e1bcc32da3293b3820da09fea612
knative.serving.knative.dev_services.yaml|knative/serving|knative-v1.23.0|config/core/300-resources/service.yaml|2df2faa748f4d8e9470a2a5e9f208d7310aa89fc8cad1f2b1b9941fefe3def33
openfaas.openfaas.com_functions.yaml|openfaas/faas-netes|0.18.17|artifacts/crds/openfaas.com_functions.yaml|d287234eb0bfb40e5e910c59601c0822344622eab6d32e11be8b801d2ab64b90
monitoring.coreos.com_servicemonitors.yaml|prometheus-operator/prometheus-operator|6adcebc5076c34f4f55f8f5f7b1e528929373ac7|example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml|a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32
monitoring.coreos.com_podmonitors.yaml|prometheus-operator/prometheus-operator|6adcebc5076c34f4f55f8f5f7b1e528929373ac7|example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml|45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d
"

echo "$CRDS" | while IFS='|' read -r name repo ref path sum; do
  [ -n "$name" ] || continue
  # A file already there is only checked, so this runs on every `make test` without the network;
  # one that is missing (a first run, or one that failed half-way) is fetched.
  if [ ! -s "$DEST/$name" ]; then
    echo "get  $name ($repo@$ref)"
    curl -fsSL --retry 3 -o "$DEST/$name.part" "https://github.com/$repo/raw/$ref/$path"
    mv "$DEST/$name.part" "$DEST/$name"
  fi
  echo "$sum  $DEST/$name" | sha256sum --check --quiet || {
    echo "$DEST/$name is not the CRD of $repo@$ref (sha256 differs)" >&2; exit 1; }
done
