{{/*
A small TOML writer for the services' configuration files. Helm's toToml writes every number from
values as a float (30 becomes 30.0), which the services refuse where they expect an integer; this
one writes whole numbers as integers. Tables become a [section] each with dotted keys inside.
*/}}

{{/* A whole document from a map of sections. */}}
{{- define "crs.toml" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "map" $value) }}
{{ include "crs.toml.key" $key }} = {{ include "crs.toml.value" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := . }}
{{- if kindIs "map" $value }}

[{{ include "crs.toml.key" $key }}]
{{- include "crs.toml.dotted" (dict "prefix" "" "table" $value) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Each leaf of a table as "prefix.key = value" on a line of its own. */}}
{{- define "crs.toml.dotted" -}}
{{- $prefix := .prefix -}}
{{- range $key, $value := .table }}
{{- $path := printf "%s%s" $prefix (include "crs.toml.key" $key) }}
{{- if and (kindIs "map" $value) (gt (len $value) 0) }}
{{- include "crs.toml.dotted" (dict "prefix" (printf "%s." $path) "table" $value) }}
{{- else }}
{{ $path }} = {{ include "crs.toml.value" $value }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "crs.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "crs.toml.value" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if kindIs "float64" . -}}
{{- if eq . (float64 (int64 .)) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "uint64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "crs.toml.value" $item }}{{ end -}}]
{{- else if kindIs "map" . -}}
{{- $table := . -}}
{ {{- range $i, $key := keys $table | sortAlpha }}{{ if $i }},{{ end }} {{ include "crs.toml.key" $key }} = {{ include "crs.toml.value" (get $table $key) }}{{ end }} }
{{- else if kindIs "invalid" . -}}
{{- fail "a configuration value is null; TOML has no null: remove the key instead" -}}
{{- else -}}
{{- fail (printf "cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}
