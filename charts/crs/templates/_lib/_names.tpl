{{/*
Names and labels. A component is one of the four services, named as its binary is
(intake, triage, legal-review, notification); "crs.component" tells what the chart knows about it.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "crs.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: fullnameOverride, else "<release>-<name>", shortened to the
release name when that already contains the chart's name (release "crs" gives "crs-intake").
*/}}
{{- define "crs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "crs.name" . -}}
{{- $full := ternary .Release.Name (printf "%s-%s" .Release.Name $name) (contains $name .Release.Name) -}}
{{- $full | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<suffix>" within the 63 characters of a DNS label. Takes (dict "ctx" $ "suffix" "..."). */}}
{{- define "crs.fullnameWith" -}}
{{- $room := sub 62 (len .suffix) | int -}}
{{- printf "%s-%s" (include "crs.fullname" .ctx | trunc $room | trimSuffix "-") .suffix -}}
{{- end -}}

{{/*
What the chart knows about each component: its values key, binary, the peers it calls (config
key → component) and the components that call it.
*/}}
{{- define "crs.components" -}}
intake:
  key: intake
  binary: crs-intake
  peers: {triage: triage, legal_review: legal-review, notification: notification}
  callers: [legal-review]
triage:
  key: triage
  binary: crs-triage
  peers: {legal_review: legal-review}
  callers: [intake, legal-review]
legal-review:
  key: legalReview
  binary: crs-legal-review
  peers: {intake: intake, notification: notification, triage: triage}
  callers: [triage, intake]
notification:
  key: notification
  binary: crs-notification
  peers: {}
  callers: [intake, legal-review]
{{- end -}}

{{/* The component names, in flow order. */}}
{{- define "crs.componentNames" -}}
[intake, triage, legal-review, notification]
{{- end -}}

{{/* One component's entry of "crs.components" as YAML. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.component" -}}
{{- $all := include "crs.components" .ctx | fromYaml -}}
{{- if not (hasKey $all .component) -}}
{{- fail (printf "unknown component %q" .component) -}}
{{- end -}}
{{- get $all .component | toYaml -}}
{{- end -}}

{{/* The values of one component (intake:, triage:, legalReview:, notification:) as YAML. */}}
{{- define "crs.componentValues" -}}
{{- $meta := include "crs.component" . | fromYaml -}}
{{- index .ctx.Values $meta.key | toYaml -}}
{{- end -}}

{{/* The name of a component's objects: "<fullname>-<component>". */}}
{{- define "crs.componentName" -}}
{{- include "crs.fullnameWith" (dict "ctx" .ctx "suffix" .component) -}}
{{- end -}}

{{/* The image's version: its tag, or the chart's appVersion. */}}
{{- define "crs.version" -}}
{{- .Values.global.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "crs.image" -}}
{{- $image := .Values.global.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (include "crs.version" .) -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "crs.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "crs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "crs.version" . | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crs
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What selects a component's pods. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crs.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's labels. Takes (dict "ctx" $ "component" "..."). */}}
{{- define "crs.labels" -}}
{{ include "crs.commonLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's ServiceAccount. */}}
{{- define "crs.serviceAccountName" -}}
{{- $v := include "crs.componentValues" . | fromYaml -}}
{{- if $v.serviceAccount.create -}}
{{- $v.serviceAccount.name | default (include "crs.componentName" .) -}}
{{- else -}}
{{- $v.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}
