{{/* A component's HorizontalPodAutoscaler, when its autoscaling is enabled. */}}
{{- define "crs.lib.hpa" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $a := (index $ctx.Values $meta.key).autoscaling -}}
{{- if $a.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "crs.componentName" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- with $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}
