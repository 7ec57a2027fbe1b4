{{/* A component's PodDisruptionBudget: voluntary evictions take at most maxUnavailable pods at once. */}}
{{- define "crs.lib.pdb" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $pdb := (index $ctx.Values $meta.key).podDisruptionBudget -}}
{{- if $pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "crs.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
