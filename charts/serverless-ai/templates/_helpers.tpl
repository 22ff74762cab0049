{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "sai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped prefix: "serverless-ai" for a release of that name, else "<release>-<name>". */}}
{{- define "sai.fullname" -}}
{{- $name := include "sai.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sai.tritonName" -}}{{ include "sai.fullname" . }}-triton{{- end -}}

{{/* Knative service carrying Triton. KServe names it <isvc>-predictor; knative mode uses the same
     name so that TRITON_URL does not depend on the mode. */}}
{{- define "sai.tritonServiceName" -}}{{ include "sai.tritonName" . }}-predictor{{- end -}}

{{/* host:port for tritonclient (no scheme): the Knative service's cluster-local address. */}}
{{- define "sai.tritonUrl" -}}
{{- printf "%s.%s.svc.cluster.local:80" (include "sai.tritonServiceName" .) .Release.Namespace -}}
{{- end -}}

{{- define "sai.minioName" -}}{{ include "sai.fullname" . }}-minio{{- end -}}

{{/* Labels ----------------------------------------------------------------------------------- */}}
{{- define "sai.labels" -}}
app.kubernetes.io/name: {{ include "sai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod labels that NetworkPolicies and monitors select on. Call with (list $ "component"). */}}
{{- define "sai.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "sai.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Timeouts: derived from .Values.timeouts only (see values.yaml). Integers in seconds. ------- */}}
{{- define "sai.timeout.coldStart" -}}{{ int .Values.timeouts.tritonColdStartSeconds }}{{- end -}}
{{- define "sai.timeout.function" -}}
{{- add (int .Values.timeouts.tritonColdStartSeconds) (int .Values.timeouts.marginSeconds) -}}
{{- end -}}
{{/* Knative's revision timeout (and response-start timeout, progress deadline) for Triton: above
     the functions' TRITON_TIMEOUT_S, so the client gives up first with its own clear error. */}}
{{- define "sai.timeout.tritonRevision" -}}{{ include "sai.timeout.function" . }}{{- end -}}
{{- define "sai.timeout.progressDeadline" -}}{{ int .Values.timeouts.tritonProgressDeadlineSeconds }}{{- end -}}
{{- define "sai.timeout.gateway" -}}
{{- add (include "sai.timeout.function" . | int) (int .Values.timeouts.marginSeconds) -}}
{{- end -}}
{{/* The gateway's own HTTP server read/write timeouts (and the async queue's ack wait) must
     outlast its upstream timeout. */}}
{{- define "sai.timeout.gatewayServer" -}}
{{- add (include "sai.timeout.gateway" . | int) (int .Values.timeouts.marginSeconds) -}}
{{- end -}}

{{/* Security: restricted Pod Security Standard for every container we run. ------------------ */}}
{{- define "sai.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sai.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pods that Knative runs (Triton, Knative functions) carry no pod-level securityContext:
     Knative rejects one unless config-features kubernetes.podspec-securitycontext is enabled
     (off by default: knative/serving knative-v1.23.0 pkg/apis/config/features.go), whereas the
     container-level fields below are always allowed (pkg/apis/serving/fieldmask.go,
     SecurityContextMask). Call with (list $ uid). */}}
{{- define "sai.knativeContainerSecurityContext" -}}
{{- $uid := index . 1 -}}
{{ include "sai.containerSecurityContext" (index . 0) }}
runAsUser: {{ $uid }}
runAsGroup: {{ $uid }}
{{- end -}}

{{/* The S3 endpoint the functions and Triton use: explicit, else the chart's MinIO. */}}
{{- define "sai.minioEndpoint" -}}
{{- printf "%s.%s.svc.cluster.local:9000" (include "sai.minioName" .) .Release.Namespace -}}
{{- end -}}

{{- define "sai.modelsS3Endpoint" -}}
{{- if .Values.modelRepository.s3.endpoint -}}{{ .Values.modelRepository.s3.endpoint }}
{{- else if .Values.minio.enabled -}}{{ include "sai.minioEndpoint" . }}
{{- end -}}
{{- end -}}

{{/* The bucket of modelRepository.s3.uri (s3://BUCKET/prefix). */}}
{{- define "sai.modelsBucket" -}}
{{- trimPrefix "s3://" .Values.modelRepository.s3.uri | splitList "/" | first -}}
{{- end -}}

{{- define "sai.functionsS3Endpoint" -}}
{{- if .Values.functions.objectClassify.s3Endpoint -}}{{ .Values.functions.objectClassify.s3Endpoint }}
{{- else if .Values.minio.enabled -}}http://{{ include "sai.minioEndpoint" . }}
{{- end -}}
{{- end -}}

{{/* Whether PodMonitors are rendered: true/false, or "auto" = Prometheus Operator API served. */}}
{{- define "sai.podMonitorsEnabled" -}}
{{- $v := .Values.monitoring.podMonitors -}}
{{- if eq (toString $v) "auto" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PodMonitor") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}true{{- end -}}
{{- else if $v -}}true{{- end -}}
{{- end -}}

{{/* Whether Triton talks HTTPS to the model store: the bundled MinIO serves plain HTTP. */}}
{{- define "sai.modelsS3UseHttps" -}}
{{- if and (not .Values.modelRepository.s3.endpoint) .Values.minio.enabled -}}0
{{- else -}}{{ ternary "1" "0" .Values.modelRepository.s3.useHttps }}
{{- end -}}
{{- end -}}

{{/* Checks that values cannot express in JSON schema; fail the render with a clear message. */}}
{{- define "sai.validate" -}}
{{- if and (eq .Values.modelRepository.source "s3") (not .Values.modelRepository.s3.uri) -}}
{{- fail "modelRepository.s3.uri is empty: set your models bucket in a values file (modelRepository: {s3: {uri: s3://YOUR-BUCKET/serverless-ai}}) and pass it with -f; the chart has no default, since S3 bucket names are global (docs/kubernetes.md, First install)" -}}
{{- end -}}
{{- if and (eq .Values.triton.mode "knative") (eq .Values.modelRepository.source "s3") .Values.modelRepository.localModelCache.enabled -}}
{{- fail "modelRepository.localModelCache needs triton.mode=kserve (it is a KServe feature)" -}}
{{- end -}}
{{- $oc := .Values.functions.objectClassify -}}
{{- if and $oc.inputPrefix (hasPrefix $oc.inputPrefix $oc.resultsPrefix) -}}
{{- fail "functions.objectClassify.resultsPrefix must not be under inputPrefix: results would trigger object-classify again" -}}
{{- end -}}
{{- if gt (include "sai.timeout.function" . | int) 600 -}}
{{- if eq .Values.functions.mode "knative" -}}
{{- fail "function timeout (tritonColdStartSeconds + marginSeconds) exceeds Knative's 600 s revision maximum" -}}
{{- end -}}
{{- end -}}
{{- if lt (include "sai.timeout.progressDeadline" . | int) (include "sai.timeout.tritonRevision" . | int) -}}
{{- fail (printf "timeouts.tritonProgressDeadlineSeconds (%s) must be at least Triton's revision timeout (%s s): Knative would cancel a wake while requests still wait for it" (include "sai.timeout.progressDeadline" .) (include "sai.timeout.tritonRevision" .)) -}}
{{- end -}}
{{- if ge (int .Values.triton.startup.maxSeconds) (include "sai.timeout.progressDeadline" . | int) -}}
{{- fail (printf "triton.startup.maxSeconds (%d) must be below the revision's progress-deadline (%ss, timeouts.tritonProgressDeadlineSeconds): Knative gives up on the revision first" (int .Values.triton.startup.maxSeconds) (include "sai.timeout.progressDeadline" .)) -}}
{{- end -}}
{{- if and (ne .Values.functions.mode "none") (not .Values.functions.imageRegistry) -}}
{{- fail (printf "functions.imageRegistry is required with functions.mode=%s: the registry your cluster pulls the function images from (the REGISTRY you pushed them to with faas-cli)" .Values.functions.mode) -}}
{{- end -}}
{{- include "sai.clusterChecks" . -}}
{{- end -}}

{{/* Checks against the live cluster, at `helm install/upgrade` time. `lookup` answers nothing
     under `helm template` and client-side dry runs, so they are skipped there: kube-system exists
     on every cluster, which tells the two apart. Each check takes what it looked up as its
     argument, so tests can feed it recorded objects (tests/test_k8s_chart.py). */}}
{{- define "sai.clusterChecks" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" -}}
{{- include "sai.check.knativeFeatures" (list . (lookup "v1" "ConfigMap" "knative-serving" "config-features")) -}}
{{- include "sai.check.tritonOwner" (list . (lookup "serving.knative.dev/v1" "Service" .Release.Namespace (include "sai.tritonServiceName" .))) -}}
{{- if eq .Values.modelRepository.source "s3" -}}
{{- $namespaces := list .Release.Namespace -}}
{{- if and .Values.modelRepository.localModelCache.enabled (eq .Values.triton.mode "kserve") -}}
{{- $namespaces = append $namespaces .Values.modelRepository.localModelCache.jobNamespace -}}
{{- end -}}
{{- $sa := .Values.modelRepository.s3.serviceAccountName -}}
{{- range $ns := $namespaces -}}
{{- if $sa -}}
{{- include "sai.check.modelsServiceAccount" (list $ (lookup "v1" "ServiceAccount" $ns $sa) $ns) -}}
{{- else if eq $.Values.triton.mode "kserve" -}}
{{- include "sai.check.modelsSecret" (list $ (lookup "v1" "Secret" $ns $.Values.modelRepository.s3.existingSecret) $ns) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Knative Serving rejects pod-spec fields whose config-features flag is not "enabled"
     (defaults: knative/serving knative-v1.23.0 pkg/apis/config/features.go: emptyDir enabled,
     the others disabled). (list $ configMapOrEmpty) */}}
{{- define "sai.check.knativeFeatures" -}}
{{- $ := index . 0 -}}
{{- $cm := index . 1 -}}
{{- if not $cm -}}
{{- fail "Knative Serving is not installed (no ConfigMap knative-serving/config-features): run k8s/bootstrap.sh, or install knative-v1.23.0 first" -}}
{{- end -}}
{{- $data := default dict $cm.data -}}
{{- $need := list "kubernetes.podspec-volumes-emptydir" -}}
{{- $t := $.Values.triton -}}
{{- if $t.nodeSelector }}{{ $need = append $need "kubernetes.podspec-nodeselector" }}{{ end -}}
{{- if $t.tolerations }}{{ $need = append $need "kubernetes.podspec-tolerations" }}{{ end -}}
{{- if $t.affinity }}{{ $need = append $need "kubernetes.podspec-affinity" }}{{ end -}}
{{- if $t.runtimeClassName }}{{ $need = append $need "kubernetes.podspec-runtimeclassname" }}{{ end -}}
{{- if and (eq $t.mode "knative") (eq $.Values.modelRepository.source "pvc") }}{{ $need = append $need "kubernetes.podspec-persistent-volume-claim" }}{{ end -}}
{{- $missing := list -}}
{{- range $need -}}
{{- $default := ternary "enabled" "disabled" (eq . "kubernetes.podspec-volumes-emptydir") -}}
{{- if ne (lower (get $data . | default $default)) "enabled" }}{{ $missing = append $missing . }}{{ end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf `Knative Serving's config-features must enable %s for this chart's Triton pod spec. Fix: kubectl apply --server-side --field-manager=serverless-ai -k k8s/overlays/gpu (sets them), or: kubectl -n knative-serving patch configmap config-features --type merge -p '{"data":{%s}}'` (join ", " $missing) (include "sai.enabledJson" $missing)) -}}
{{- end -}}
{{- end -}}

{{- define "sai.enabledJson" -}}
{{- $parts := list -}}
{{- range . }}{{ $parts = append $parts (printf `"%s":"enabled"` .) }}{{ end -}}
{{- join "," $parts -}}
{{- end -}}

{{/* Switching triton.mode: KServe's predictor Knative Service and the knative-mode one share a
     name (so TRITON_URL never changes); the old one must be gone before the other mode creates
     its own. (list $ ksvcOrEmpty) */}}
{{- define "sai.check.tritonOwner" -}}
{{- $ := index . 0 -}}
{{- $ksvc := index . 1 -}}
{{- if $ksvc -}}
{{- $byIsvc := false -}}
{{- range (default list $ksvc.metadata.ownerReferences) }}{{ if eq .kind "InferenceService" }}{{ $byIsvc = true }}{{ end }}{{ end -}}
{{- $name := $ksvc.metadata.name -}}
{{- $ns := $.Release.Namespace -}}
{{- if and (eq $.Values.triton.mode "knative") $byIsvc -}}
{{- fail (printf "Knative Service %s still belongs to the InferenceService of triton.mode=kserve. To switch to knative mode, first: kubectl -n %s delete inferenceservice %s --wait, then upgrade again (functions answer 503 with Retry-After meanwhile)" $name $ns (include "sai.tritonName" $)) -}}
{{- end -}}
{{- if and (eq $.Values.triton.mode "kserve") (not $byIsvc) -}}
{{- fail (printf "Knative Service %s was created by triton.mode=knative; KServe would fight over it. To switch to kserve mode, first: kubectl -n %s delete ksvc %s --wait, then upgrade again" $name $ns $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* KServe reads the S3 endpoint, HTTPS and region from the credentials Secret itself: its
     annotations serving.kserve.io/s3-*, else data keys of the env names, else inferenceservice-config
     (kserve v0.20.0 pkg/credentials/s3/s3_secret.go BuildSecretEnvs, s3/utils.go getEnvValue).
     ServiceAccount annotations count only with an EKS role ARN (service_account_credentials.go),
     so the chart cannot set them for you: it checks them. (list $ secretOrEmpty namespace) */}}
{{- define "sai.check.modelsSecret" -}}
{{- $ := index . 0 -}}
{{- $secret := index . 1 -}}
{{- $ns := index . 2 -}}
{{- $s3 := $.Values.modelRepository.s3 -}}
{{- if not $secret -}}
{{- fail (printf "Secret %s not found in namespace %s: create it with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (docs/kubernetes.md, First install), or use workload identity (modelRepository.s3.serviceAccountName)" $s3.existingSecret $ns) -}}
{{- end -}}
{{- $data := default dict $secret.data -}}
{{- if not (and (hasKey $data "AWS_ACCESS_KEY_ID") (hasKey $data "AWS_SECRET_ACCESS_KEY")) -}}
{{- fail (printf "Secret %s/%s needs the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (KServe's inferenceservice-config credentials.s3 names)" $ns $s3.existingSecret) -}}
{{- end -}}
{{- with include "sai.s3SettingsWrong" (list $ (default dict $secret.metadata.annotations) $data) -}}
{{- fail (printf "Secret %s/%s does not carry the S3 settings KServe's storage initializer reads from it. Fix: kubectl -n %s annotate --overwrite secret %s %s" $ns $s3.existingSecret $ns $s3.existingSecret .) -}}
{{- end -}}
{{- end -}}

{{/* Workload identity: the user's ServiceAccount must exist. With an EKS role ARN on it, KServe
     reads endpoint/HTTPS/region from its serving.kserve.io/s3-* annotations
     (service_account_credentials.go: AwsIrsaAnnotationKey, s3_service_account.go), so they are
     checked as on a Secret. Without one (EKS Pod Identity), KServe sets no S3 settings from it and
     inferenceservice-config's credentials.s3 defaults apply. (list $ serviceAccountOrEmpty namespace) */}}
{{- define "sai.check.modelsServiceAccount" -}}
{{- $ := index . 0 -}}
{{- $sa := index . 1 -}}
{{- $ns := index . 2 -}}
{{- $name := $.Values.modelRepository.s3.serviceAccountName -}}
{{- if not $sa -}}
{{- fail (printf "ServiceAccount %s not found in namespace %s (modelRepository.s3.serviceAccountName): create it with your IAM role's annotation (docs/kubernetes.md, Workload identity)" $name $ns) -}}
{{- end -}}
{{- $ann := default dict $sa.metadata.annotations -}}
{{- if and (hasKey $ann "eks.amazonaws.com/role-arn") (eq $.Values.triton.mode "kserve") -}}
{{- with include "sai.s3SettingsWrong" (list $ $ann dict) -}}
{{- fail (printf "ServiceAccount %s/%s has an IAM role, so KServe's storage initializer reads the S3 settings from its annotations, and they do not match the values. Fix: kubectl -n %s annotate --overwrite serviceaccount %s %s" $ns $name $ns $name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The S3 settings KServe would read from (annotations, data) that differ from the values:
     "key=value ..." to annotate, "" when all agree. (list $ annotations data) */}}
{{- define "sai.s3SettingsWrong" -}}
{{- $ := index . 0 -}}
{{- $ann := index . 1 -}}
{{- $data := index . 2 -}}
{{- $s3 := $.Values.modelRepository.s3 -}}
{{- $want := dict "serving.kserve.io/s3-usehttps" (list "S3_USE_HTTPS" (include "sai.modelsS3UseHttps" $)) "serving.kserve.io/s3-region" (list "AWS_DEFAULT_REGION" $s3.region) -}}
{{- with include "sai.modelsS3Endpoint" $ }}{{ $_ := set $want "serving.kserve.io/s3-endpoint" (list "S3_ENDPOINT" .) }}{{ end -}}
{{- $wrong := list -}}
{{- range $key, $v := $want -}}
{{- $have := get $ann $key | default (get $data (index $v 0) | b64dec) -}}
{{- if ne $have (index $v 1) }}{{ $wrong = append $wrong (printf "%s=%s" $key (index $v 1)) }}{{ end -}}
{{- end -}}
{{- join " " (sortAlpha $wrong) -}}
{{- end -}}

{{/* MinIO policy of object-classify's user (IAM JSON; mc admin policy create): what its S3 calls
     need (tests/test_events_object_classify.py replays them against this). ListObjectsV2 is
     s3:ListBucket on the bucket (MinIO cmd/bucket-listobjects-handlers.go), for the nightly
     sweep's listing of inputPrefix only (condition s3:prefix). */}}
{{- define "sai.minio.functionsPolicy" -}}
{{- $oc := .Values.functions.objectClassify -}}
{{- $results := default .Values.minio.uploadsBucket $oc.resultsBucket -}}
{{- dict "Version" "2012-10-17" "Statement" (list
      (dict "Effect" "Allow" "Action" (list "s3:ListBucket") "Resource" (list (printf "arn:aws:s3:::%s" .Values.minio.uploadsBucket))
            "Condition" (dict "StringLike" (dict "s3:prefix" (list (printf "%s*" $oc.inputPrefix)))))
      (dict "Effect" "Allow" "Action" (list "s3:GetObject") "Resource" (list (printf "arn:aws:s3:::%s/%s*" .Values.minio.uploadsBucket $oc.inputPrefix)))
      (dict "Effect" "Allow" "Action" (list "s3:GetObject" "s3:PutObject" "s3:DeleteObject") "Resource" (list (printf "arn:aws:s3:::%s/%s*" $results $oc.resultsPrefix)))
    ) | toPrettyJson -}}
{{- end -}}
