{{/*
A component's NetworkPolicy. Ingress: gRPC only from the components that call it in the flow (and
from anywhere for intake's public port), metrics only from monitoring. Egress: DNS, PostgreSQL,
Redis, the peers it calls, the OTLP collector, and for notification the webhook addresses and,
with email, the mail server.
Takes (dict "ctx" $ "component" "...").
*/}}
{{- define "crs.lib.networkPolicy" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $g := $ctx.Values.global -}}
{{- $np := $g.networkPolicy -}}
{{- $ports := include "crs.ports" . | fromYaml -}}
{{- if $np.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "crs.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports:
        - port: {{ $ports.grpc }}
          protocol: TCP
      {{- if not $v.networkPolicy.allowExternal }}
      from:
        {{- range $caller := $meta.callers }}
        - podSelector:
            matchLabels:
              {{- include "crs.selectorLabels" (dict "ctx" $ctx "component" $caller) | nindent 14 }}
        {{- end }}
        {{- with $v.networkPolicy.extraIngressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    {{- with $np.metricsFrom }}
    - ports:
        - port: {{ $ports.metrics }}
          protocol: TCP
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  egress:
    {{- include "crs.lib.networkPolicy.storageEgress" $ctx | nindent 4 }}
    - ports:
        {{- range $np.redis.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $np.redis.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- if $meta.peers }}
    - ports:
        - port: {{ $ports.grpc }}
          protocol: TCP
      to:
        {{- range $peer := values $meta.peers | sortAlpha }}
        - podSelector:
            matchLabels:
              {{- include "crs.selectorLabels" (dict "ctx" $ctx "component" $peer) | nindent 14 }}
        {{- end }}
    {{- end }}
    {{- if $g.telemetry.otlpEndpoint }}
    - ports:
        {{- range $np.otlp.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $np.otlp.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- if eq .component "notification" }}
    {{- $webhooks := $v.networkPolicy.webhookEgress }}
    - to:
        {{- range $webhooks.cidrs }}
        - ipBlock:
            {{- toYaml . | nindent 12 }}
        {{- end }}
      {{- with $webhooks.ports }}
      ports:
        {{- range . }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- end }}
    {{- if $v.email.existingSecret }}
    {{- $smtp := $v.networkPolicy.smtpEgress }}
    - ports:
        {{- range $smtp.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $smtp.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* Egress every pod that touches the database needs: DNS and PostgreSQL. */}}
{{- define "crs.lib.networkPolicy.storageEgress" -}}
{{- $np := .Values.global.networkPolicy -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with $np.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
- ports:
    {{- range $np.postgresql.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.postgresql.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
