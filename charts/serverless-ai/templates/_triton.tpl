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
# Knative exposes a single port: HTTP (binary tensors). gRPC stays off, so its own model-control
# RPCs are closed too.
- --http-port=8080
- --allow-grpc=false
# Only health, metadata, model config (the functions read preprocessing parameters from it) and
# inference stay open. Loading/unloading models, shared memory, statistics, trace and log settings
# need the header `triton-admin-key` with the value from the Secret <release>-triton-admin
# (server r25.09 src/command_line_parser.cc --http-restricted-api; a request without it gets 403).
# Kubernetes expands $(TRITON_ADMIN_KEY) from the container's env.
- --http-restricted-api=model-repository,shared-memory,statistics,trace,logging:triton-admin-key=$(TRITON_ADMIN_KEY)
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

{{/* Triton opens its HTTP port only after loading every model (server r25.09 src/main.cc: the
     endpoints start once the server object, which loads the --load-model list, exists), so the
     startupProbe covers the load and warm-up; the kubelet runs liveness and readiness only after
     it has succeeded. Knative allows startupProbe on the serving container and passes it to the
     kubelet unchanged (serving knative-v1.23.0 pkg/apis/serving/fieldmask.go ContainerMask,
     pkg/reconciler/revision/resources/deploy.go: only readiness moves into queue-proxy and only
     liveness gets its port rewritten). Timeouts above the kubelet's 1 s default: a CPU Triton
     busy with a batch answers health checks late, which must not flip readiness or restart it. */}}
{{- define "sai.triton.probes" -}}
{{- $startup := .Values.triton.startup }}
startupProbe:
  httpGet:
    path: /v2/health/live
    port: 8080
  periodSeconds: {{ $startup.periodSeconds }}
  failureThreshold: {{ div (add $startup.maxSeconds $startup.periodSeconds -1) $startup.periodSeconds }}
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: 8080
  periodSeconds: {{ .Values.triton.readiness.periodSeconds }}
  failureThreshold: {{ .Values.triton.readiness.failureThreshold }}
  timeoutSeconds: 3
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: 8080
  periodSeconds: 10
  failureThreshold: 6
  timeoutSeconds: 5
{{- end -}}

{{/* Knative revision annotations: scale to zero (KPA) and how long a wake may take (the progress
     deadline: node provisioning + image pull + model load, see values.yaml). KServe passes every
     ISVC annotation except min/max-scale through to the revision (kserve v0.20.0
     pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go). */}}
{{- define "sai.triton.knativeAnnotations" -}}
autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
autoscaling.knative.dev/metric: concurrency
autoscaling.knative.dev/target: {{ .Values.triton.containerConcurrencyTarget | quote }}
autoscaling.knative.dev/initial-scale: {{ .Values.triton.initialScale | quote }}
autoscaling.knative.dev/scale-to-zero-pod-retention-period: {{ .Values.triton.scaleToZeroRetention | quote }}
serving.knative.dev/progress-deadline: {{ printf "%ss" (include "sai.timeout.progressDeadline" .) | quote }}
{{- end -}}

{{/* Where Triton pods may run and how their image is pulled; also the pre-pull DaemonSet's. */}}
{{- define "sai.triton.placement" -}}
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
{{- with .Values.triton.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "sai.triton.podSpecExtras" -}}
{{- include "sai.triton.placement" . }}
{{- with .Values.triton.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end -}}

{{- define "sai.triton.image" -}}{{ .Values.triton.image.repository }}:{{ .Values.triton.image.tag }}{{- end -}}

{{/* Triton's container securityContext (non-root uid of the NGC image, set per container: see
     sai.knativeContainerSecurityContext). */}}
{{- define "sai.triton.securityContext" -}}
{{ include "sai.knativeContainerSecurityContext" (list . .Values.triton.runAsUser) }}
{{- end -}}

{{- define "sai.triton.adminSecretName" -}}{{ include "sai.tritonName" . }}-admin{{- end -}}

{{/* The admin key reaches Triton's args through this env var. */}}
{{- define "sai.triton.adminEnv" -}}
- name: TRITON_ADMIN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "sai.triton.adminSecretName" . }}
      key: triton-admin-key
{{- end -}}

{{/* The ServiceAccount Triton's pod runs as with an S3 model store: the user's own (workload
     identity, no keys) or the chart's, which lists the credentials Secret. */}}
{{- define "sai.triton.modelsServiceAccount" -}}
{{- .Values.modelRepository.s3.serviceAccountName | default (printf "%s-models" (include "sai.tritonName" .)) -}}
{{- end -}}
