{{/*
Migrations run before the services start or change: a Job per component in the pre-install and
pre-upgrade hooks, running the component's binary with --migrate-only on the same configuration
file as the service. Hooks run before the release's own objects exist, so what the Jobs need (their
configuration, a ServiceAccount, trial database URLs, a NetworkPolicy) is created as hooks too,
just before them, and all of it is deleted once every Job has succeeded.
*/}}

{{- define "crs.migrations.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end -}}

{{- define "crs.migrations.name" -}}
{{- include "crs.fullnameWith" (dict "ctx" .ctx "suffix" (printf "%s-migrations" .component)) -}}
{{- end -}}

{{- define "crs.migrations.labels" -}}
{{ include "crs.commonLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}-migrations
{{- end -}}

{{/* A component's migration configuration and Job. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.lib.migrations" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $g := $ctx.Values.global -}}
{{- $paths := include "crs.paths" . | fromYaml -}}
{{- $db := include "crs.migrationsDatabaseSecret" . | fromYaml -}}
{{- if $g.migrations.enabled }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "crs.migrations.name" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.migrations.labels" . | nindent 4 }}
  annotations:
    {{- include "crs.migrations.hookAnnotations" -10 | nindent 4 }}
data:
  config.toml: |
    {{- include "crs.configToml" . | nindent 4 }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "crs.migrations.name" . }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "crs.migrations.labels" . | nindent 4 }}
  annotations:
    {{- include "crs.migrations.hookAnnotations" 0 | nindent 4 }}
spec:
  backoffLimit: {{ $g.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $g.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "crs.migrations.labels" . | nindent 8 }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "crs.fullnameWith" (dict "ctx" $ctx "suffix" "migrations") }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- toYaml $g.podSecurityContext | nindent 8 }}
      {{- with $g.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector | default $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations | default $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: migrate
          image: {{ include "crs.image" $ctx }}
          imagePullPolicy: {{ $g.image.pullPolicy }}
          command: [/usr/local/bin/{{ $meta.binary }}]
          args: [--config, {{ $paths.configFile }}, --migrate-only]
          env:
            - name: CRS_DATABASE__URL
              valueFrom:
                secretKeyRef:
                  {{- if $db.trial }}
                  name: {{ include "crs.fullnameWith" (dict "ctx" $ctx "suffix" "migrations") }}
                  {{- else }}
                  name: {{ $db.name }}
                  {{- end }}
                  key: {{ $db.key }}
          resources:
            {{- toYaml $g.migrations.resources | nindent 12 }}
          securityContext:
            {{- toYaml $g.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: {{ $paths.configDir }}
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "crs.migrations.name" . }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end }}
{{- end -}}

{{/* What every migration Job shares: a ServiceAccount, trial URLs, a NetworkPolicy. Takes $. */}}
{{- define "crs.lib.migrationsShared" -}}
{{- $ctx := . -}}
{{- $g := .Values.global -}}
{{- $name := include "crs.fullnameWith" (dict "ctx" . "suffix" "migrations") -}}
{{- $components := include "crs.componentNames" . | fromYamlArray -}}
{{- if $g.migrations.enabled }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "crs.commonLabels" . | nindent 4 }}
    app.kubernetes.io/component: migrations
  annotations:
    {{- include "crs.migrations.hookAnnotations" -10 | nindent 4 }}
automountServiceAccountToken: false
{{- $trial := dict }}
{{- range $c := $components }}
{{- $db := include "crs.databaseSecret" (dict "ctx" $ctx "component" $c) | fromYaml }}
{{- if $db.trial }}
{{- $_ := set $trial $db.key ((index $ctx.Values (include "crs.component" (dict "ctx" $ctx "component" $c) | fromYaml).key).database.url) }}
{{- end }}
{{- end }}
{{- if $trial }}
---
# Trial installs only: database URLs from values. Use database.existingSecret in production.
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "crs.commonLabels" . | nindent 4 }}
    app.kubernetes.io/component: migrations
  annotations:
    {{- include "crs.migrations.hookAnnotations" -10 | nindent 4 }}
type: Opaque
stringData:
  {{- range $key, $url := $trial }}
  {{ $key }}: {{ required (printf "a database url or existingSecret is needed for %s" $key) $url | quote }}
  {{- end }}
{{- end }}
{{- if $g.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "crs.commonLabels" . | nindent 4 }}
    app.kubernetes.io/component: migrations
  annotations:
    {{- include "crs.migrations.hookAnnotations" -10 | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ include "crs.name" . }}
      app.kubernetes.io/instance: {{ .Release.Name }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values:
          {{- range $components }}
          - {{ . }}-migrations
          {{- end }}
  policyTypes: [Ingress, Egress]
  egress:
    {{- include "crs.lib.networkPolicy.storageEgress" . | nindent 4 }}
{{- end }}
{{- end }}
{{- end -}}
