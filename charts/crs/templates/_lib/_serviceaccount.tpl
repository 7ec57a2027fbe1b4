{{/* A component's ServiceAccount; the services never call the Kubernetes API, so no token is mounted. */}}
{{- define "crs.lib.serviceAccount" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- if $v.serviceAccount.create }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "crs.serviceAccountName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
  {{- with $v.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
