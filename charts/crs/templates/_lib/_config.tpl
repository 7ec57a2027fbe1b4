{{/*
A component's configuration: the TOML file the service reads (`--config`), and the environment
that completes it with secrets. Every key written here must be one the service knows: the chart
tests run each binary with `--check-config` on what this renders.
*/}}

{{/* Fixed ports and paths inside the pods. */}}
{{- define "crs.ports" -}}
grpc: 50051
metrics: 9100
health: 50052
{{- end -}}

{{- define "crs.paths" -}}
configDir: /etc/crs
configFile: /etc/crs/config.toml
policiesDir: /etc/crs/policies
policiesFile: /etc/crs/policies/sla-policies.toml
rulesDir: /etc/crs/rules
rulesFile: /etc/crs/rules/triage-rules.toml
keysDir: /var/run/secrets/crs/keys
tlsDir: /var/run/secrets/crs/tls
caDir: /var/run/secrets/crs/ca
webhooksDir: /var/run/secrets/crs/webhooks
webhookSecretKeyFile: /var/run/secrets/crs/webhooks/secret.key
{{- end -}}

{{/* "host:port" for the services to bind. */}}
{{- define "crs.listenAddr" -}}
{{- $host := .ctx.Values.global.listenHost -}}
{{- if contains ":" $host -}}{{- $host = printf "[%s]" $host -}}{{- end -}}
{{- printf "%s:%v" $host .port -}}
{{- end -}}

{{/* The address at which a component is called by its peers: https:// with TLS on. */}}
{{- define "crs.peerUrl" -}}
{{- $ports := include "crs.ports" . | fromYaml -}}
{{- $scheme := ternary "https" "http" .ctx.Values.global.tls.enabled -}}
{{- printf "%s://%s.%s.svc:%v" $scheme (include "crs.componentName" .) .ctx.Release.Namespace $ports.grpc -}}
{{- end -}}

{{/* The seconds a service drains after SIGTERM. */}}
{{- define "crs.shutdownGraceSeconds" -}}
{{- .Values.global.shutdownGraceSeconds | int -}}
{{- end -}}

{{/* The pod's grace period: longer than the preStop pause and the drain together. */}}
{{- define "crs.terminationGracePeriodSeconds" -}}
{{- $g := .Values.global -}}
{{- $needed := add $g.preStopSleepSeconds $g.shutdownGraceSeconds | int -}}
{{- if $g.terminationGracePeriodSeconds -}}
{{- if le (int $g.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "global.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + shutdownGraceSeconds (%d)" $g.terminationGracePeriodSeconds $needed) -}}
{{- end -}}
{{- $g.terminationGracePeriodSeconds | int -}}
{{- else -}}
{{- add $needed 5 -}}
{{- end -}}
{{- end -}}

{{/* The service's configuration file. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.configToml" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $g := $ctx.Values.global -}}
{{- $ports := include "crs.ports" . | fromYaml -}}
{{- $paths := include "crs.paths" . | fromYaml -}}
{{- $telemetry := dict "log_filter" ($v.logFilter | default $g.telemetry.logFilter) -}}
{{- with $g.telemetry.otlpEndpoint -}}
{{- $_ := set $telemetry "otlp_endpoint" . -}}
{{- end -}}
{{- $cfg := dict
  "server" (dict "listen_addr" (include "crs.listenAddr" (dict "ctx" $ctx "port" $ports.grpc)) "shutdown_grace_secs" (include "crs.shutdownGraceSeconds" $ctx | int))
  "admin" (dict "listen_addr" (include "crs.listenAddr" (dict "ctx" $ctx "port" $ports.metrics)))
  "database" (dict "max_connections" ($v.database.maxConnections | int) "min_connections" ($v.database.minConnections | int))
  "auth" (include "crs.authConfig" . | fromYaml)
  "telemetry" $telemetry
-}}
{{- if $g.tls.enabled -}}
{{- /* The gRPC port speaks only TLS: probes ask a plaintext port that serves health alone. */ -}}
{{- $_ := set $cfg.server "health_listen_addr" (include "crs.listenAddr" (dict "ctx" $ctx "port" $ports.health)) -}}
{{- end -}}
{{- if $meta.peers -}}
{{- $peers := dict -}}
{{- range $key, $peer := $meta.peers -}}
{{- $_ := set $peers $key (include "crs.peerUrl" (dict "ctx" $ctx "component" $peer)) -}}
{{- end -}}
{{- $_ := set $cfg "peers" $peers -}}
{{- end -}}
{{- if eq .component "triage" -}}
{{- $_ := set $cfg "policies" (dict "sla_file" $paths.policiesFile "rules_file" $paths.rulesFile) -}}
{{- end -}}
# crs-{{ .component }}: written by the chart. Secrets come from the environment and mounted files.
{{ include "crs.toml" (mergeOverwrite (deepCopy ($v.config | default dict)) $cfg) | trim }}
{{- end -}}

{{/* Where a component's database URL is: (dict "name" secret "key" key). */}}
{{- define "crs.databaseSecret" -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $db := (index .ctx.Values $meta.key).database -}}
{{- if $db.existingSecret -}}
name: {{ $db.existingSecret }}
key: {{ $db.existingSecretKey }}
{{- else -}}
name: {{ include "crs.fullnameWith" (dict "ctx" .ctx "suffix" "connections") }}
key: {{ .component }}-database-url
trial: true
{{- end -}}
{{- end -}}

{{/*
The database URL a component's migration Job uses: a Secret of the table owner's credentials
when `database.migrationsExistingSecret` names one (so the service's own role may be granted
less, e.g. no UPDATE or DELETE on legal review's audit trail), else the service's own.
*/}}
{{- define "crs.migrationsDatabaseSecret" -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $db := (index .ctx.Values $meta.key).database -}}
{{- if $db.migrationsExistingSecret -}}
name: {{ $db.migrationsExistingSecret }}
key: {{ $db.migrationsExistingSecretKey }}
{{- else -}}
{{- include "crs.databaseSecret" . -}}
{{- end -}}
{{- end -}}

{{/* Where a component's Redis URL is: its own Secret, the global one, or the trial one. */}}
{{- define "crs.redisSecret" -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $own := (index .ctx.Values $meta.key).redis -}}
{{- $global := .ctx.Values.global.redis -}}
{{- if $own.existingSecret -}}
name: {{ $own.existingSecret }}
key: {{ $own.existingSecretKey }}
{{- else if $global.existingSecret -}}
name: {{ $global.existingSecret }}
key: {{ $global.existingSecretKey }}
{{- else -}}
name: {{ include "crs.fullnameWith" (dict "ctx" .ctx "suffix" "connections") }}
key: redis-url
trial: true
{{- end -}}
{{- end -}}

{{/* Whether any URL comes from values: "true" or "". */}}
{{- define "crs.trialConnections" -}}
{{- $ctx := . -}}
{{- range $c := include "crs.componentNames" . | fromYamlArray -}}
{{- $args := dict "ctx" $ctx "component" $c -}}
{{- if or (include "crs.databaseSecret" $args | fromYaml).trial (include "crs.redisSecret" $args | fromYaml).trial -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the deployment's keys: (dict "name" secret "generated" bool). */}}
{{- define "crs.keysSecret" -}}
{{- with .Values.global.auth.keys.existingSecret -}}
name: {{ . }}
{{- else -}}
name: {{ include "crs.fullnameWith" (dict "ctx" . "suffix" "keys") }}
generated: true
{{- end -}}
{{- end -}}

{{/*
A component's [auth] section: the token issuer's public key, its own private key, and the
directory of every service's public key; intake also signs agencies' and reviewers' tokens.
Takes (dict "ctx" $ "component" "...").
*/}}
{{- define "crs.authConfig" -}}
{{- $paths := include "crs.paths" . | fromYaml -}}
issuer: {{ .ctx.Values.global.auth.issuer | quote }}
token_public_key_files: [{{ printf "%s/tokens.pub" $paths.keysDir | quote }}]
service_key_file: {{ printf "%s/%s.key" $paths.keysDir .component | quote }}
service_public_keys_dir: {{ $paths.keysDir | quote }}
{{- if eq .component "intake" }}
token_signing_key_file: {{ printf "%s/tokens.key" $paths.keysDir | quote }}
{{- end }}
{{- end -}}

{{/* The files of the keys Secret a component's pod mounts. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.keyFiles" -}}
{{- $files := list "tokens.pub" -}}
{{- range $c := include "crs.componentNames" .ctx | fromYamlArray -}}
{{- $files = append $files (printf "%s.pub" $c) -}}
{{- end -}}
{{- $files = append $files (printf "%s.key" .component) -}}
{{- if eq .component "intake" -}}
{{- $files = append $files "tokens.key" -}}
{{- end -}}
{{- toYaml $files -}}
{{- end -}}

{{/* The Secret holding the key that seals webhook secrets: (dict "name" secret "key" key). */}}
{{- define "crs.webhookSecretKeySecret" -}}
{{- $wk := .Values.global.webhookSecretKey -}}
{{- if $wk.existingSecret -}}
name: {{ $wk.existingSecret }}
key: {{ $wk.existingSecretKey }}
{{- else -}}
name: {{ include "crs.fullnameWith" (dict "ctx" . "suffix" "webhook-secret-key") }}
key: webhook-secret.key
generated: true
{{- end -}}
{{- end -}}

{{/* Whether a component holds the webhook-secret key: intake seals with it, notification opens. */}}
{{- define "crs.holdsWebhookSecretKey" -}}
{{- if has .component (list "intake" "notification") -}}true{{- end -}}
{{- end -}}

{{/* A service container's environment. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.serviceEnv" -}}
{{- $ctx := .ctx -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- $v := index $ctx.Values $meta.key -}}
{{- $g := $ctx.Values.global -}}
{{- $paths := include "crs.paths" . | fromYaml -}}
{{- $db := include "crs.databaseSecret" . | fromYaml -}}
{{- $redis := include "crs.redisSecret" . | fromYaml -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: CRS_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.name }}
      key: {{ $db.key }}
- name: CRS_DATABASE__MIGRATE
  value: "false"
- name: CRS_REDIS__URL
  valueFrom:
    secretKeyRef:
      name: {{ $redis.name }}
      key: {{ $redis.key }}
{{- if $g.tls.enabled }}
- name: CRS_TLS__ENABLED
  value: "true"
- name: CRS_TLS__CERT_FILE
  value: {{ $paths.tlsDir }}/tls.crt
- name: CRS_TLS__KEY_FILE
  value: {{ $paths.tlsDir }}/tls.key
- name: CRS_TLS__CA_FILE
  value: {{ $paths.caDir }}/ca.crt
- name: CRS_TLS__CLIENT_AUTH
  value: {{ $g.tls.clientAuth | quote }}
{{- end }}
{{- if include "crs.holdsWebhookSecretKey" . }}
- name: CRS_WEBHOOKS__SECRET_KEY_FILE
  value: {{ $paths.webhookSecretKeyFile }}
{{- end }}
{{- if and (eq .component "notification") $v.email.existingSecret }}
- name: CRS_EMAIL__SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.email.existingSecret }}
      key: {{ $v.email.existingSecretKey }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: crs-{{ .component }}
{{- $attrs := list "service.instance.id=$(POD_NAME)" "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" (printf "k8s.deployment.name=%s" (include "crs.componentName" .)) (printf "service.version=%s" (include "crs.version" $ctx)) }}
{{- range $k, $val := $g.telemetry.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $val) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $g.telemetry.tracesSampler | quote }}
{{- with $g.telemetry.tracesSamplerArg | toString }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ $g.telemetry.metricExportIntervalMs | int | quote }}
{{- with $g.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
