{{/* Release-wide name: the release name, with the chart name appended unless it already holds it. */}}
{{- define "baemin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one service's objects: <fullname>-<service>. Call with (dict "root" $ "name" "call"). */}}
{{- define "baemin.name" -}}
{{- printf "%s-%s" (include "baemin.fullname" .root) .name -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "baemin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baemin
{{- end -}}

{{/* Selector labels of one service's pods. Call with (dict "root" $ "name" "call"). */}}
{{- define "baemin.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Labels of one service's objects. */}}
{{- define "baemin.componentLabels" -}}
{{ include "baemin.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* The image: repository:tag, pinned with @digest when a digest is given. */}}
{{- define "baemin.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- $ref -}}
{{- end -}}
{{- end -}}

{{/* In-cluster URL of a service's gRPC port. Call with (dict "root" $ "name" "payment"). */}}
{{- define "baemin.url" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "baemin.name" .) .root.Release.Namespace (int $svc.port) -}}
{{- end -}}

{{/* Fully qualified host of a service. */}}
{{- define "baemin.host" -}}
{{- printf "%s.%s.svc.cluster.local" (include "baemin.name" .) .root.Release.Namespace -}}
{{- end -}}

{{/* Istio principal of a service's ServiceAccount. */}}
{{- define "baemin.principal" -}}
{{- printf "cluster.local/ns/%s/sa/%s" .root.Release.Namespace (include "baemin.name" .) -}}
{{- end -}}
