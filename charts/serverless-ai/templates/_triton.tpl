{{/* Pieces shared by the KServe and the plain-Knative renderings of Triton. */}}

{{/* Model repository path as Triton sees it. KServe's storage initializer downloads to
     /mnt/models; plain Knative mounts a PVC there or lets Triton read S3 itself. */}}
{{- define "sai.triton.repository" -}}
{{- $r := .Values.modelRepository -}}
{{- if and (eq .Values.triton.mode "knative") (eq $r.source "s3") -}}
{{- $endpoint := include "sai.modelsS3Endpoint" . -}}
{{- $path := trimPrefix "s3://" $r.s3.uri -}}
{{- if $endpoint -}}
s3://{{ if $r.s3.useHttps }}https://{{ end }}{{ $endpoint }}/{{ $path }}
{{- else -}}
{{ $r.s3.uri }}
{{- end -}}
{{- else -}}
/mnt/models
{{- end -}}
{{- end -}}

{{/* KServe storageUri. */}}
{{- define "sai.triton.storageUri" -}}
{{- $r := .Values.modelRepository -}}
{{- if eq $r.source "pvc" -}}
pvc://{{ $r.pvc.claimName }}{{ with $r.pvc.path }}/{{ trimPrefix "/" . }}{{ end }}
{{- else -}}
{{ $r.s3.uri }}
{{- end -}}
{{- end -}}

{{- define "sai.triton.args" -}}
- tritonserver
- --model-repository={{ include "sai.triton.repository" . }}
{{- with .Values.triton.modelConfigName }}
- --model-config-name={{ . }}
{{- end }}
# Explicit control: exactly the listed models load; strict readiness makes /v2/health/ready
# (the readiness probe) wait for all of them, so Knative routes traffic only to warm replicas.
- --model-control-mode=explicit
{{- range .Values.triton.models }}
- --load-model={{ . }}
{{- end }}
- --strict-readiness=true
- --exit-on-error=true
# Knative exposes a single port: HTTP (binary tensors). gRPC stays off.
- --http-port=8080
- --allow-grpc=false
- --allow-metrics=true
- --allow-gpu-metrics={{ if gt (int .Values.triton.gpu) 0 }}true{{ else }}false{{ end }}
- --metrics-port=8002
{{- range .Values.triton.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "sai.triton.resources" -}}
{{- $res := deepCopy .Values.triton.resources -}}
{{- if gt (int .Values.triton.gpu) 0 -}}
{{- $_ := set $res "requests" (merge (default dict $res.requests) (dict "nvidia.com/gpu" (toString .Values.triton.gpu))) -}}
{{- $_ := set $res "limits" (merge (default dict $res.limits) (dict "nvidia.com/gpu" (toString .Values.triton.gpu))) -}}
{{- end -}}
{{- toYaml $res -}}
{{- end -}}

{{- define "sai.triton.probes" -}}
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: 8080
  periodSeconds: {{ .Values.triton.readiness.periodSeconds }}
  failureThreshold: {{ .Values.triton.readiness.failureThreshold }}
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: 8080
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{/* Knative revision annotations: scale to zero (KPA) and the cold-start budget. */}}
{{- define "sai.triton.knativeAnnotations" -}}
autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
autoscaling.knative.dev/metric: concurrency
autoscaling.knative.dev/target: {{ .Values.triton.containerConcurrencyTarget | quote }}
autoscaling.knative.dev/initial-scale: {{ .Values.triton.initialScale | quote }}
autoscaling.knative.dev/scale-to-zero-pod-retention-period: {{ .Values.triton.scaleToZeroRetention | quote }}
serving.knative.dev/progress-deadline: {{ printf "%ss" (include "sai.timeout.coldStart" .) | quote }}
{{- end -}}

{{- define "sai.triton.podSpecExtras" -}}
{{- with .Values.triton.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.triton.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.triton.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.triton.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with .Values.triton.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
securityContext:
  {{- include "sai.podSecurityContext" . | nindent 2 }}
  runAsUser: {{ .Values.triton.runAsUser }}
  runAsGroup: {{ .Values.triton.runAsUser }}
  fsGroup: {{ .Values.triton.runAsUser }}
{{- end -}}
