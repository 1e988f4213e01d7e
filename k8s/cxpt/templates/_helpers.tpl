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
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- if not (and .Values.kafka.sasl.username .Values.kafka.sasl.passwordSecret.name) }}
{{- fail "kafka.securityProtocol SASL_*: set kafka.sasl.username and kafka.sasl.passwordSecret.name" }}
{{- end }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
{{- end }}
{{- if .Values.kafka.caSecret.name }}
KAFKA_SSL_CA_LOCATION: "/etc/cxpt/kafka-ca/ca.crt"
{{- end }}
TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
{{- with .Values.schemaRegistry.url }}
SCHEMA_REGISTRY_URL: {{ . | quote }}
{{- end }}
CASSANDRA_CONTACT_POINTS: {{ required "cassandra.contactPoints is required" .Values.cassandra.contactPoints | quote }}
CASSANDRA_PORT: {{ .Values.cassandra.port | quote }}
CASSANDRA_KEYSPACE: {{ .Values.cassandra.keyspace | quote }}
CASSANDRA_REPLICATION: {{ .Values.cassandra.replication | quote }}
{{- with .Values.cassandra.username }}
{{- if not $.Values.cassandra.passwordSecret.name }}
{{- fail "cassandra.username: set cassandra.passwordSecret.name too" }}
{{- end }}
CASSANDRA_USERNAME: {{ . | quote }}
{{- end }}
{{- if .Values.cassandra.caSecret.name }}
CASSANDRA_SSL_CA: "/etc/cxpt/cassandra-ca/ca.crt"
{{- end }}
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

{{/* The stores' credentials from existing Secrets, where configured (container env entries):
the ClickHouse DSN, Kafka's SASL password, Cassandra's password. */}}
{{- define "cxpt.storeSecretsEnv" -}}
{{- if .Values.clickhouse.dsnSecret.name }}
{{ include "cxpt.secretEnvEntry" (list "CLICKHOUSE_DSN" .Values.clickhouse.dsnSecret) }}
{{- end }}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{ include "cxpt.secretEnvEntry" (list "KAFKA_SASL_PASSWORD" .Values.kafka.sasl.passwordSecret) }}
{{- end }}
{{- if .Values.cassandra.username }}
{{ include "cxpt.secretEnvEntry" (list "CASSANDRA_PASSWORD" .Values.cassandra.passwordSecret) }}
{{- end }}
{{- end }}

{{/* One env entry `(list NAME {name, key})` read from an existing Secret. */}}
{{- define "cxpt.secretEnvEntry" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ (index . 1).name }}
      key: {{ (index . 1).key }}
{{- end }}

{{/* The stores' CA certificates from existing Secrets, where configured: volumes, then mounts. */}}
{{- define "cxpt.caVolumes" -}}
{{- range $store, $ref := dict "kafka" .Values.kafka.caSecret "cassandra" .Values.cassandra.caSecret }}
{{- if $ref.name }}
- name: {{ $store }}-ca
  secret:
    secretName: {{ $ref.name }}
    items: [{key: {{ $ref.key }}, path: ca.crt}]
{{- end }}
{{- end }}
{{- end }}

{{- define "cxpt.caVolumeMounts" -}}
{{- range $store, $ref := dict "kafka" .Values.kafka.caSecret "cassandra" .Values.cassandra.caSecret }}
{{- if $ref.name }}
- name: {{ $store }}-ca
  mountPath: /etc/cxpt/{{ $store }}-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Restricted container security context plus the writable /tmp every container mounts. */}}
{{- define "cxpt.containerSecurity" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}
