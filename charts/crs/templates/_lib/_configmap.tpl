{{/*
A component's ConfigMap: its configuration file and, for triage, the SLA policy and triage rules
files. Never a
secret: URLs with passwords and keys come from Secrets. Takes (dict "ctx" $ "component" "...").
*/}}
{{- define "crs.lib.configMap" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
data:
  {{- include "crs.lib.configMapData" . | nindent 2 }}
{{- end -}}

{{/* The ConfigMap's data; its checksum rolls the pods when it changes. */}}
{{- define "crs.lib.configMapData" -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index .ctx.Values $meta.key -}}
config.toml: |
  {{- include "crs.configToml" . | nindent 2 }}
{{- if and (eq .component "triage") (not $v.slaPolicies.existingConfigMap) }}
sla-policies.toml: |
  {{- $v.slaPolicies.content | default (.ctx.Files.Get "files/sla-policies.toml") | nindent 2 }}
{{- end }}
{{- if and (eq .component "triage") (not $v.rules.existingConfigMap) }}
triage-rules.toml: |
  {{- $v.rules.content | default (.ctx.Files.Get "files/triage-rules.toml") | nindent 2 }}
{{- end }}
{{- end -}}
