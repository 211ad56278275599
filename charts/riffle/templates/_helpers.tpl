{{/* The release's full name, at most 63 characters. */}}
{{- define "riffle.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "riffle.labels" -}}
app.kubernetes.io/name: riffle-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "riffle.selectorLabels" -}}
app.kubernetes.io/name: riffle-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "riffle.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "riffle.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
