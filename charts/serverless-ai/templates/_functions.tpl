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

{{/* OpenFaaS scaling labels of one function, (list $ "function-name"): functions.labels, then
     its items.<name>.labels. */}}
{{- define "sai.function.labels" -}}
{{- $ := index . 0 -}}
{{- $item := index $.Values.functions.items (index . 1) -}}
{{- toYaml (mergeOverwrite (deepCopy ($.Values.functions.labels | default dict)) ($item.labels | default dict)) -}}
{{- end -}}

{{/* Those labels as Knative autoscaling annotations, (list $ "function-name"). Absent labels take
     OpenFaaS's defaults (min 1, max 20, rps, target 50, proportion 0.90, zero-duration 15m), so a
     function means the same on OpenFaaS Pro, here and under `sai up` (docs/scaling.md). Names and
     bounds: knative/serving knative-v1.23.0 pkg/apis/autoscaling/register.go and
     annotation_validation.go (KPA takes the metrics concurrency and rps; activation-scale >= 2;
     target-utilization-percentage 1..100; validateFloats: target at least TargetMin 0.01;
     validateLastPodRetention, validateScaleDownDelay: at most WindowMax 1h, the delay in whole
     seconds), each refused here with its reason. */}}
{{/* Seconds in a Go duration ("1h30m", "1500ms"; the schema checked its form). */}}
{{- define "sai.durationSeconds" -}}
{{- $units := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "ns" 0.000000001 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "([0-9]+\\.?[0-9]*|\\.[0-9]+)(ns|us|ms|s|m|h)" . -1 -}}
{{- $n := regexFind "^[0-9.]+" . -}}
{{- $total = addf $total (mulf (float64 $n) (index $units (trimPrefix $n .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{- define "sai.function.knativeScale" -}}
{{- $l := include "sai.function.labels" . | fromYaml -}}
{{- $p := "com.openfaas.scale." -}}
{{- $min := int (index $l (print $p "min") | default "1") -}}
{{- $max := int (index $l (print $p "max") | default "20") -}}
{{- if lt $max $min -}}
{{- fail (printf "%smax=%d is below %smin=%d (function %s)" $p $max $p $min (index . 1)) -}}
{{- end -}}
{{- $zero := eq (index $l (print $p "zero") | default "false") "true" -}}
{{- $metric := get (dict "rps" "rps" "capacity" "concurrency") (index $l (print $p "type") | default "rps") -}}
{{- $percent := round (mulf (float64 (index $l (print $p "target-proportion") | default "0.90")) 100) 2 -}}
{{- if or (lt $percent 1.0) (gt $percent 100.0) -}}
{{- fail (printf "%starget-proportion must give 1..100 %% in Knative (function %s)" $p (index . 1)) -}}
{{- end -}}
{{- $fn := index . 1 -}}
{{- $target := index $l (print $p "target") | default "50" -}}
{{- if lt (float64 $target) 0.01 -}}
{{- fail (printf "%starget=%s: Knative's target is at least 0.01 (function %s)" $p $target $fn) -}}
{{- end -}}
{{- $zeroFor := index $l (print $p "zero-duration") | default "15m" -}}
{{- if and $zero (gt (float64 (include "sai.durationSeconds" $zeroFor)) 3600.0) -}}
{{- fail (printf "%szero-duration=%s: Knative keeps a last replica at most 1h (scale-to-zero-pod-retention-period; function %s)" $p $zeroFor $fn) -}}
{{- end -}}
{{- with index $l (print $p "down.window") -}}
{{- $w := float64 (include "sai.durationSeconds" .) -}}
{{- if or (gt $w 300.0) (ne $w (floor $w)) -}}
{{- fail (printf "%sdown.window=%s: at most 5m (OpenFaaS) in whole seconds (Knative's scale-down-delay; function %s)" $p . $fn) -}}
{{- end -}}
{{- end -}}
autoscaling.knative.dev/class: kpa.autoscaling.knative.dev
autoscaling.knative.dev/min-scale: {{ ternary 0 $min $zero | quote }}
{{- if and $zero (gt $min 1) }}
# what a wake starts: OpenFaaS scales a function at zero back to its min
autoscaling.knative.dev/activation-scale: {{ $min | quote }}
{{- end }}
autoscaling.knative.dev/max-scale: {{ $max | quote }}
autoscaling.knative.dev/metric: {{ $metric }}
autoscaling.knative.dev/target: {{ $target | quote }}
autoscaling.knative.dev/target-utilization-percentage: {{ $percent | quote }}
{{- if $zero }}
# the last replica stays this long after Knative decides on zero (which takes its stable window, 60s)
autoscaling.knative.dev/scale-to-zero-pod-retention-period: {{ $zeroFor | quote }}
{{- end }}
{{- with index $l (print $p "down.window") }}
# Knative keeps the highest recommendation of this window, as OpenFaaS's down.window does
autoscaling.knative.dev/scale-down-delay: {{ . | quote }}
{{- end }}
{{- end -}}
