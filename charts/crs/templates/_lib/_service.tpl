{{/* A component's Service: gRPC for its callers, metrics for monitoring. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.lib.service" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $ports := include "crs.ports" . | fromYaml }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "crs.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    - name: metrics
      port: {{ $ports.metrics }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end -}}
