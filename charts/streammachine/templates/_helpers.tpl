{{/* Chart name, overridable. */}}
{{- define "streammachine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 40 characters so that every suffix used below
("-master-headless", "-operator") keeps object names within 63.
*/}}
{{- define "streammachine.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streammachine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: only name, instance and component, never changing. */}}
{{- define "streammachine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streammachine.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component. Call with (dict "ctx" $ "component" "master"). */}}
{{- define "streammachine.labels" -}}
helm.sh/chart: {{ include "streammachine.chart" .ctx }}
{{ include "streammachine.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: streammachine
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image of the worker and operator (one image, both binaries). */}}
{{- define "streammachine.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Secret with the cluster token and the Redis/NATS URLs. */}}
{{- define "streammachine.secretName" -}}
{{- include "streammachine.fullname" . }}
{{- end }}

{{- define "streammachine.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "streammachine.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Redis URL: the bundled Redis or externalRedis.url. */}}
{{- define "streammachine.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "streammachine.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "externalRedis.url is required when redis.enabled=false" .Values.externalRedis.url }}
{{- end }}
{{- end }}

{{/* NATS URL: the bundled NATS or externalNats.url. */}}
{{- define "streammachine.natsUrl" -}}
{{- if .Values.nats.enabled }}
{{- printf "nats://%s-nats.%s.svc:4222" (include "streammachine.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "externalNats.url is required when nats.enabled=false" .Values.externalNats.url }}
{{- end }}
{{- end }}

{{/* The master's admin and rewind-transport URL, fully qualified for slaves in any namespace. */}}
{{- define "streammachine.masterAdminUrl" -}}
{{- printf "http://%s-master-admin.%s.svc:%d" (include "streammachine.fullname" .) .Release.Namespace (int .Values.master.adminPort) }}
{{- end }}

{{/* Env of master and operator: token and URLs from the Secret, prefixes as values. */}}
{{- define "streammachine.commonEnv" -}}
- name: STREAMMACHINE_CLUSTER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "streammachine.secretName" . }}
      key: cluster-token
- name: STREAMMACHINE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "streammachine.secretName" . }}
      key: redis-url
- name: STREAMMACHINE_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "streammachine.secretName" . }}
      key: nats-url
- name: STREAMMACHINE_REDIS_PREFIX
  value: {{ .Values.redisPrefix | quote }}
- name: STREAMMACHINE_NATS_PREFIX
  value: {{ .Values.natsPrefix | quote }}
{{- end }}
