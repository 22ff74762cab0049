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

{{/* The S3 endpoint the functions and Triton use: explicit, else the chart's MinIO. */}}
{{- define "sai.minioEndpoint" -}}
{{- printf "%s.%s.svc.cluster.local:9000" (include "sai.minioName" .) .Release.Namespace -}}
{{- end -}}

{{- define "sai.modelsS3Endpoint" -}}
{{- if .Values.modelRepository.s3.endpoint -}}{{ .Values.modelRepository.s3.endpoint }}
{{- else if .Values.minio.enabled -}}{{ include "sai.minioEndpoint" . }}
{{- end -}}
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

{{/* Checks that values cannot express in JSON schema; fail the render with a clear message. */}}
{{- define "sai.validate" -}}
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
{{- end -}}
