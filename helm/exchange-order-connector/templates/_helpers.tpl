{{/* Chart name, truncated to the 63-character DNS label limit. */}}
{{- define "eoc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release already contains the chart name. */}}
{{- define "eoc.fullname" -}}
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

{{- define "eoc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eoc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eoc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "eoc.labels" -}}
helm.sh/chart: {{ include "eoc.chart" . }}
{{ include "eoc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: exchange-order-connector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "eoc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eoc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eoc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Is an accounts file configured at all? */}}
{{- define "eoc.hasAccounts" -}}
{{- if or .Values.accounts.existingSecret .Values.accounts.content }}true{{ end }}
{{- end }}

{{/* Secret that holds the accounts file. */}}
{{- define "eoc.accountsSecretName" -}}
{{- default (include "eoc.fullname" .) .Values.accounts.existingSecret }}
{{- end }}

{{- define "eoc.saslEnabled" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "eoc.tlsEnabled" -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret }}true{{ end }}
{{- end }}

{{/* Does the chart render its own Secret (inline accounts file and/or inline SASL password)? */}}
{{- define "eoc.chartSecret" -}}
{{- if or (and .Values.accounts.content (not .Values.accounts.existingSecret)) (and (include "eoc.saslEnabled" .) .Values.kafka.sasl.password (not .Values.kafka.sasl.existingSecret)) }}true{{ end }}
{{- end }}

{{- define "eoc.tlsMountPath" -}}/etc/connector/kafka-tls{{- end }}

{{/* Key of the schedules file in its ConfigMap (its extension picks YAML). */}}
{{- define "eoc.schedulesKey" -}}schedules.yaml{{- end }}

{{/*
A secret put in extraConfig would land in a ConfigMap. values.schema.json cannot say where it
belongs instead (a schema failure reads "invalid propertyName ... 'not' failed"), so the check is
here, naming the value that takes it.
*/}}
{{- define "eoc.validateExtraConfig" -}}
{{- range $name, $_ := .Values.extraConfig }}
{{- if regexMatch "PASSWORD|SECRET|PASSPHRASE|API_KEY|PRIVATE_KEY|TOKEN|USER_INFO" $name }}
{{- $where := printf "an extraEnv entry instead: {name: %s, valueFrom: {secretKeyRef: {name: <your Secret>, key: <its key>}}}" $name }}
{{- if eq $name "CONNECTOR_KAFKA_SASL_PASSWORD" }}
{{- $where = "kafka.sasl.existingSecret (the name of a Secret holding the password; key kafka.sasl.existingSecretKey)" }}
{{- else if eq $name "CONNECTOR_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" }}
{{- $where = "schemaRegistry.basicAuth.existingSecret (the name of a Secret holding user:password)" }}
{{- else if regexMatch "API_KEY|API_SECRET|PASSPHRASE" $name }}
{{- $where = "the accounts file, per account (accounts.existingSecret)" }}
{{- end }}
{{- fail (printf "extraConfig.%s looks like a secret, and extraConfig is rendered into a ConfigMap: use %s" $name $where) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Cross-field checks that values.schema.json cannot express. Rendering fails with one clear line.
*/}}
{{- define "eoc.validate" -}}
{{- include "eoc.validateExtraConfig" . }}
{{- range $name, $value := dict "CONNECTOR_TOPIC_STATE" "topics.state" "CONNECTOR_TOPIC_COMMANDS_BY_ACCOUNT" "topics.commandsByAccount" }}
{{- if hasKey $.Values.extraConfig $name }}
{{- fail (printf "extraConfig.%s: set %s instead" $name $value) }}
{{- end }}
{{- end }}
{{- if and .Values.schedules (hasKey .Values.extraConfig "CONNECTOR_SCHEDULES_FILE") }}
{{- fail "set schedules or extraConfig.CONNECTOR_SCHEDULES_FILE, not both" }}
{{- end }}
{{- $partitions := int .Values.topics.partitions }}
{{- if eq .Values.autoscaling.mode "none" }}
{{- if gt (int .Values.replicaCount) $partitions }}
{{- fail (printf "replicaCount (%d) must not exceed topics.partitions (%d): extra consumers would sit idle" (int .Values.replicaCount) $partitions) }}
{{- end }}
{{- else }}
{{- if gt (int .Values.autoscaling.maxReplicas) $partitions }}
{{- fail (printf "autoscaling.maxReplicas (%d) must not exceed topics.partitions (%d): extra consumers would sit idle" (int .Values.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.autoscaling.mode "keda") (ne .Values.kafka.securityProtocol "PLAINTEXT") (not .Values.autoscaling.keda.authenticationRef) }}
{{- fail "autoscaling.keda.authenticationRef is required when kafka.securityProtocol is not PLAINTEXT: KEDA must authenticate to read consumer lag" }}
{{- end }}
{{- if not (include "eoc.hasAccounts" .) }}
{{- fail "accounts.existingSecret (or accounts.content) is required: the worker will not start without an accounts file" }}
{{- end }}
{{- if and .Values.accounts.existingSecret .Values.accounts.content }}
{{- fail "set only one of accounts.existingSecret and accounts.content" }}
{{- end }}
{{- if and .Values.kafka.sasl.existingSecret .Values.kafka.sasl.password }}
{{- fail "set only one of kafka.sasl.existingSecret and kafka.sasl.password" }}
{{- end }}
{{- if and (include "eoc.saslEnabled" .) (not (or .Values.kafka.sasl.existingSecret .Values.kafka.sasl.password)) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.existingSecret (or kafka.sasl.password)" .Values.kafka.securityProtocol) }}
{{- end }}
{{- if and (include "eoc.saslEnabled" .) (not .Values.kafka.sasl.username) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username" .Values.kafka.securityProtocol) }}
{{- end }}
{{- end }}
