{{/* Chart name, overridable. */}}
{{- define "realtime-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains the chart name. */}}
{{- define "realtime-gateway.fullname" -}}
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

{{- define "realtime-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "realtime-gateway.labels" -}}
helm.sh/chart: {{ include "realtime-gateway.chart" . }}
{{ include "realtime-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: realtime-gateway
{{- end }}

{{- define "realtime-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "realtime-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret the chart creates for values given inline. */}}
{{- define "realtime-gateway.secretName" -}}
{{- include "realtime-gateway.fullname" . }}
{{- end }}

{{/* True when a Redis URL is configured (inline or from an existing Secret): cluster mode. */}}
{{- define "realtime-gateway.clusterMode" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{- end }}
{{- end }}

{{/* True when the chart must create its Secret. */}}
{{- define "realtime-gateway.createSecret" -}}
{{- if or (and (or .Values.jwt.secret .Values.jwt.publicKey .Values.jwt.secretPrevious) (not .Values.jwt.existingSecret)) (and .Values.redis.url (not .Values.redis.existingSecret)) (and .Values.turn.secret (not .Values.turn.existingSecret)) (and .Values.subscribeProxy.secret (not .Values.subscribeProxy.existingSecret)) (and .Values.webhook.url .Values.webhook.secret (not .Values.webhook.existingSecret)) (and .Values.push.publicKey .Values.push.privateKey (not .Values.push.existingSecret)) }}true{{- end }}
{{- end }}

{{/*
Half a TURN setup fails the render: the gateway would refuse to start with it (TURN_URLS without TURN_SECRET, or
the reverse), and a failed install says why at once where a crash-looping pod would not.
*/}}
{{- define "realtime-gateway.turnComplete" -}}
{{- $secret := or .Values.turn.secret .Values.turn.existingSecret }}
{{- if and .Values.turn.urls (not $secret) }}
{{- fail "turn.urls is set without turn.secret or turn.existingSecret (the TURN server's static-auth-secret)" }}
{{- end }}
{{- if and $secret (not .Values.turn.urls) }}
{{- fail "turn.secret or turn.existingSecret is set without turn.urls (the turn: / turns: URLs of the TURN server)" }}
{{- end }}
{{- end }}

{{/*
Values that would install a release that cannot work fail the render, saying which value to set: a failed
install says why at once, where a pod crash-looping on "JWT_SECRET is required" (NODE_ENV=production) or replicas
that share nothing (no Redis) would not.
*/}}
{{- define "realtime-gateway.validate" -}}
{{- if not (or .Values.jwt.secret .Values.jwt.publicKey .Values.jwt.existingSecret .Values.jwt.jwksUrl .Values.jwt.oidcIssuerUrl) }}
{{- fail "\n\nNo JWT key source: the gateway (NODE_ENV=production) refuses to start without one. Set one of:\n  jwt.secret          an HMAC secret, e.g. --set jwt.secret=\"$(openssl rand -base64 48)\" (kept in the chart's Secret)\n  jwt.existingSecret  a Secret you manage holding it (see jwt.existingSecretKey, jwt.existingSecretType)\n  jwt.publicKey       a PEM public key (RSA, EC or Ed25519)\n  jwt.jwksUrl         your identity provider's JWKS URL\n  jwt.oidcIssuerUrl   your identity provider's issuer URL (OpenID Connect discovery)\n" }}
{{- end }}
{{- if and (not (include "realtime-gateway.clusterMode" .)) (not .Values.allowIndependentReplicas) }}
{{- if .Values.autoscaling.enabled }}
{{- fail (printf "\n\nautoscaling.enabled (up to %d replicas) without Redis: each pod would be a gateway of its own (an alert published to one never reaches the clients of another; rooms, seats and limits are per pod). Set redis.url (or redis.existingSecret) for cluster mode, or autoscaling.enabled=false and replicaCount=1, or allowIndependentReplicas=true if replicas that share nothing are what you want.\n" (int .Values.autoscaling.maxReplicas)) }}
{{- else if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "\n\nreplicaCount is %d without Redis: each pod would be a gateway of its own (an alert published to one never reaches the clients of another; rooms, seats and limits are per pod). Set redis.url (or redis.existingSecret) for cluster mode, or replicaCount=1, or allowIndependentReplicas=true if replicas that share nothing are what you want.\n" (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: preStop sleep + drain window + grace + a margin. */}}
{{- define "realtime-gateway.terminationGracePeriod" -}}
{{- add .Values.preStopSleepSeconds (div .Values.gateway.drainWindowMs 1000) (div .Values.gateway.shutdownGraceMs 1000) 5 }}
{{- end }}
