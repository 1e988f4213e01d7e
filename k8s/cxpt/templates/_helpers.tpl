{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "cxpt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: <release>-<chart> unless the release already contains the chart name. */}}
{{- define "cxpt.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cxpt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object (Helm best practices: app.kubernetes.io/*). */}}
{{- define "cxpt.labels" -}}
helm.sh/chart: {{ include "cxpt.chart" . }}
{{ include "cxpt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cxpt
{{- end }}

{{- define "cxpt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxpt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels and selector of one component: call with (dict "root" $ "component" "gateway"). */}}
{{- define "cxpt.componentLabels" -}}
{{ include "cxpt.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cxpt.componentSelector" -}}
{{ include "cxpt.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cxpt.componentName" -}}
{{- printf "%s-%s" (include "cxpt.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxpt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxpt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cxpt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The settings every service shares (the ConfigMap's data, and the bootstrap Job's env). */}}
{{- define "cxpt.settings" -}}
{{- if hasPrefix "chdb:" .Values.clickhouse.dsn }}
{{- fail "clickhouse.dsn: the embedded chdb:// engine is for one host; point the chart at a ClickHouse server (http(s)://)" }}
{{- end }}
KAFKA_BOOTSTRAP_SERVERS: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
{{- with .Values.schemaRegistry.url }}
SCHEMA_REGISTRY_URL: {{ . | quote }}
{{- end }}
CASSANDRA_CONTACT_POINTS: {{ required "cassandra.contactPoints is required" .Values.cassandra.contactPoints | quote }}
CASSANDRA_PORT: {{ .Values.cassandra.port | quote }}
CASSANDRA_KEYSPACE: {{ .Values.cassandra.keyspace | quote }}
CASSANDRA_REPLICATION: {{ .Values.cassandra.replication | quote }}
{{- if not .Values.clickhouse.dsnSecret.name }}
CLICKHOUSE_DSN: {{ required "clickhouse.dsn (or clickhouse.dsnSecret.name) is required" .Values.clickhouse.dsn | quote }}
{{- end }}
CLICKHOUSE_DATABASE: {{ .Values.clickhouse.database | quote }}
ETH_RPC_URL: {{ required "chain.rpcUrl is required" .Values.chain.rpcUrl | quote }}
CHAIN_ID: {{ .Values.chain.chainId | quote }}
{{- with .Values.chain.vaultAddress }}
VAULT_ADDRESS: {{ . | quote }}
{{- end }}
CXPT_RUN_DIR: "/tmp/cxpt"
{{- range $key, $value := .Values.config }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The ClickHouse DSN from an existing Secret, when configured (a container env entry). */}}
{{- define "cxpt.clickhouseDsnEnv" -}}
{{- if .Values.clickhouse.dsnSecret.name }}
- name: CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.clickhouse.dsnSecret.name }}
      key: {{ .Values.clickhouse.dsnSecret.key }}
{{- end }}
{{- end }}

{{/* Restricted container security context plus the writable /tmp every container mounts. */}}
{{- define "cxpt.containerSecurity" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}
