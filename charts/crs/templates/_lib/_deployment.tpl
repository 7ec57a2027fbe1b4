{{/*
A component's Deployment: one container running the component's binary from the shared image,
with native gRPC probes on grpc.health.v1 (on the plaintext health port when TLS is on), a
preStop pause before the drain, a read-only root file system and no service account token. Takes (dict "ctx" $ "component" "...").
*/}}
{{- define "crs.lib.deployment" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $g := $ctx.Values.global -}}
{{- $ports := include "crs.ports" . | fromYaml -}}
{{- $paths := include "crs.paths" . | fromYaml -}}
{{- $keys := include "crs.keysSecret" $ctx | fromYaml }}
{{- $webhookKey := include "crs.webhookSecretKeySecret" $ctx | fromYaml }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "crs.componentName" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.labels" . | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml $v.strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "crs.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "crs.labels" . | nindent 8 }}
        {{- with merge (dict) $v.podLabels $g.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "crs.lib.configMapData" . | sha256sum }}
        {{- with merge (dict) $v.podAnnotations $g.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "crs.serviceAccountName" . }}
      automountServiceAccountToken: false
      # Service links would put CRS_<SERVICE>_PORT... variables in the environment, which the
      # services read as configuration keys.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "crs.terminationGracePeriodSeconds" $ctx }}
      securityContext:
        {{- toYaml $g.podSecurityContext | nindent 8 }}
      {{- with $g.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName | default $g.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $v.nodeSelector | default $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations | default $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity | default $g.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "crs.image" $ctx }}
          imagePullPolicy: {{ $g.image.pullPolicy }}
          command: [/usr/local/bin/{{ $meta.binary }}]
          args: [--config, {{ $paths.configFile }}]
          ports:
            - name: grpc
              containerPort: {{ $ports.grpc }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $ports.metrics }}
              protocol: TCP
            {{- if $g.tls.enabled }}
            - name: health
              containerPort: {{ $ports.health }}
              protocol: TCP
            {{- end }}
          env:
            {{- include "crs.serviceEnv" . | nindent 12 }}
          {{- range $probe := list "startup" "readiness" "liveness" }}
          {{ $probe }}Probe:
            grpc:
              {{- /* With TLS on, the gRPC port speaks only TLS, which the kubelet's gRPC probes do not. */}}
              port: {{ ternary $ports.health $ports.grpc $g.tls.enabled }}
              service: {{ ternary "liveness" "" (eq $probe "liveness") | quote }}
            {{- toYaml (index $g.probes $probe) | nindent 12 }}
          {{- end }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $g.preStopSleepSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $g.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: {{ $paths.configDir }}
              readOnly: true
            - name: keys
              mountPath: {{ $paths.keysDir }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if eq .component "triage" }}
            - name: sla-policies
              mountPath: {{ $paths.policiesDir }}
              readOnly: true
            - name: triage-rules
              mountPath: {{ $paths.rulesDir }}
              readOnly: true
            {{- end }}
            {{- if $g.tls.enabled }}
            - name: tls
              mountPath: {{ $paths.tlsDir }}
              readOnly: true
            - name: tls-ca
              mountPath: {{ $paths.caDir }}
              readOnly: true
            {{- end }}
            {{- if include "crs.holdsWebhookSecretKey" . }}
            - name: webhook-secret-key
              mountPath: {{ $paths.webhooksDir }}
              readOnly: true
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "crs.componentName" . }}
            items:
              - key: config.toml
                path: config.toml
        # Every public key, and of the private keys only this component's own.
        - name: keys
          secret:
            secretName: {{ $keys.name }}
            defaultMode: 0440
            items:
              {{- range $file := include "crs.keyFiles" . | fromYamlArray }}
              - key: {{ $file }}
                path: {{ $file }}
              {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if eq .component "triage" }}
        - name: sla-policies
          configMap:
            name: {{ $v.slaPolicies.existingConfigMap | default (include "crs.componentName" .) }}
            items:
              - key: {{ ternary $v.slaPolicies.existingConfigMapKey "sla-policies.toml" (ne $v.slaPolicies.existingConfigMap "") }}
                path: sla-policies.toml
        - name: triage-rules
          configMap:
            name: {{ $v.rules.existingConfigMap | default (include "crs.componentName" .) }}
            items:
              - key: {{ ternary $v.rules.existingConfigMapKey "triage-rules.toml" (ne $v.rules.existingConfigMap "") }}
                path: triage-rules.toml
        {{- end }}
        {{- if $g.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ required "global.tls.serverSecretName is required when global.tls.enabled" $g.tls.serverSecretName }}
            defaultMode: 0440
            items:
              - key: tls.crt
                path: tls.crt
              - key: tls.key
                path: tls.key
        - name: tls-ca
          secret:
            secretName: {{ required "global.tls.caSecretName is required when global.tls.enabled" $g.tls.caSecretName }}
            defaultMode: 0440
            items:
              - key: {{ $g.tls.caSecretKey }}
                path: ca.crt
        {{- end }}
        {{- if include "crs.holdsWebhookSecretKey" . }}
        - name: webhook-secret-key
          secret:
            secretName: {{ $webhookKey.name }}
            defaultMode: 0440
            items:
              - key: {{ $webhookKey.key }}
                path: secret.key
        {{- end }}
{{- end -}}
