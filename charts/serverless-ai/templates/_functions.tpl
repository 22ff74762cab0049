{{/* Environment of one function: (list $ "function-name"). The same keys are in stack.yml;
     tests/test_k8s_stack.py checks that they agree. */}}
{{- define "sai.function.env" -}}
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $t := include "sai.timeout.function" $ -}}
TRITON_URL: {{ include "sai.tritonUrl" $ | quote }}
{{- if eq $name "object-classify" }}
TRITON_TIMEOUT_S: {{ $.Values.functions.objectClassify.tritonTimeoutSeconds | toString | quote }}
{{- else }}
TRITON_TIMEOUT_S: {{ include "sai.timeout.coldStart" $ | quote }}
{{- end }}
MAX_BODY_BYTES: {{ $.Values.functions.maxBodyBytes | int | toString | quote }}
# of-watchdog timeouts (python3-http-debian): longer than TRITON_TIMEOUT_S, shorter than the gateway.
exec_timeout: {{ printf "%ss" $t | quote }}
read_timeout: {{ printf "%ss" $t | quote }}
write_timeout: {{ printf "%ss" $t | quote }}
max_inflight: {{ $.Values.functions.maxInflight | int | toString | quote }}
{{- if has $name (list "image-classify" "object-classify") }}
MODEL_NAME: "image_classifier"
{{- else if eq $name "text-sentiment" }}
MODEL_NAME: "text_sentiment"
{{- else if eq $name "text-entities" }}
MODEL_NAME: "text_entities"
{{- else if has $name (list "text-embed" "text-keywords") }}
ENCODER_MODEL: "text_encoder"
{{- end }}
{{- if eq $name "object-classify" }}
{{- $oc := $.Values.functions.objectClassify }}
S3_ENDPOINT: {{ include "sai.functionsS3Endpoint" $ | quote }}
S3_REGION: {{ $oc.s3Region | quote }}
RESULTS_BUCKET: {{ $oc.resultsBucket | quote }}
RESULTS_PREFIX: {{ $oc.resultsPrefix | quote }}
SOURCE_BUCKETS: {{ $oc.sourceBuckets | quote }}
INPUT_PREFIX: {{ $oc.inputPrefix | quote }}
{{- end }}
{{- end -}}

{{/* Trigger annotations, as in stack.yml (the connectors read them; docs/triggers.md). */}}
{{- define "sai.function.annotations" -}}
{{- if eq . "object-classify" -}}
topic: images
{{- else if eq . "text-sentiment" -}}
topic: reviews
{{- end -}}
{{- end -}}

{{/* OpenFaaS secret names a function reads from /var/openfaas/secrets/<name>. */}}
{{- define "sai.function.secrets" -}}
{{- if eq . "object-classify" -}}
["s3-access-key-id", "s3-secret-access-key"]
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{- define "sai.function.image" -}}
{{- $ := index . 0 -}}
{{- printf "%s/%s:%s" $.Values.functions.imageRegistry (index . 1) $.Values.functions.imageTag -}}
{{- end -}}
