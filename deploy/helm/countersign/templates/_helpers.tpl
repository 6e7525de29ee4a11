{{/* Names and labels. */}}
{{- define "countersign.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "countersign.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "countersign.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "countersign.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: countersign
{{- end -}}

{{- define "countersign.selectorLabels" -}}
app.kubernetes.io/name: {{ include "countersign.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "countersign.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "countersign.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "countersign.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Redis URL the broker uses. */}}
{{- define "countersign.redisUrl" -}}
{{- if or (eq .Values.redis.mode "builtin") (eq .Values.redis.mode "sentinel") -}}
{{- printf "redis://%s-redis:6379" (include "countersign.fullname" .) -}}
{{- else -}}
{{- .Values.redis.external.url -}}
{{- end -}}
{{- end -}}

{{/* The broker's config.yaml (see docs/configuration.md). */}}
{{- define "countersign.config" -}}
{{- $svid := dict -}}
{{- if eq .Values.spiffe.mode "csi-driver" -}}
{{- $_ := set $svid "workload_api" (dict "socket" (printf "unix:///spiffe-workload-api/%s" .Values.spiffe.csiDriver.socketFile)) -}}
{{- else -}}
{{- $_ := set $svid "cert_file" "/var/run/countersign/svid/tls.crt" -}}
{{- $_ := set $svid "key_file" "/var/run/countersign/svid/tls.key" -}}
{{- end -}}
{{- $bundles := list -}}
{{- if .Values.spiffe.trustBundle.configMap -}}
{{- $bundles = append $bundles (dict "trust_domain" .Values.trustDomain "file" (printf "/etc/countersign/bundles/own/%s" .Values.spiffe.trustBundle.key) "format" .Values.spiffe.trustBundle.format) -}}
{{- end -}}
{{- range $i, $f := .Values.spiffe.federation -}}
{{- $bundles = append $bundles (dict "trust_domain" $f.trustDomain "file" (printf "/etc/countersign/bundles/federated-%d/%s" $i $f.key) "format" (default "pem" $f.format)) -}}
{{- end -}}
{{- $identity := dict "svid" $svid -}}
{{- if $bundles -}}
{{- $_ := set $identity "bundles" $bundles -}}
{{- end -}}
{{- if .Values.oidcExchange.issuers -}}
{{- $_ := set $identity "oidc" .Values.oidcExchange.issuers -}}
{{- $_ := set $identity "oidc_ca" (dict "cert_file" "/var/run/countersign/oidc-ca/tls.crt" "key_file" "/var/run/countersign/oidc-ca/tls.key") -}}
{{- end -}}
{{- $redis := dict "url" (include "countersign.redisUrl" .) "prefix" .Values.redis.prefix -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.existingSecret -}}
{{- $_ := set $redis "password_file" "/var/run/countersign/redis/password" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.sentinel.enabled -}}
{{- $_ := set $redis "sentinel" (dict "master_name" .Values.redis.external.sentinel.masterName "sentinels" .Values.redis.external.sentinel.sentinels) -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.cluster.enabled -}}
{{- $_ := set $redis "cluster" (dict "nodes" .Values.redis.external.cluster.nodes) -}}
{{- end -}}
{{- if eq .Values.redis.mode "sentinel" -}}
{{- $sentinels := list -}}
{{- range $i := until (int .Values.redis.sentinel.sentinels) -}}
{{- $sentinels = append $sentinels (printf "%s:26379" (include "countersign.sentinelHost" (dict "root" $ "i" $i))) -}}
{{- end -}}
{{- $_ := set $redis "sentinel" (dict "master_name" .Values.redis.sentinel.masterName "sentinels" $sentinels) -}}
{{- end -}}
{{- if gt (int .Values.redis.durability.replicas) 0 -}}
{{- $_ := set $redis "durability" (dict "replicas" (int .Values.redis.durability.replicas) "timeout" .Values.redis.durability.timeout) -}}
{{- end -}}
{{- $keys := list -}}
{{- range .Values.signingKeys.keys -}}
{{- $keys = append $keys (dict "file" (printf "/var/run/countersign/signing-keys/%s" .)) -}}
{{- end -}}
{{- $credentials := dict "default_audience" (default (printf "https://%s" .Values.trustDomain) .Values.broker.credentials.defaultAudience) "default_ttl" .Values.broker.credentials.defaultTtl "max_ttl" .Values.broker.credentials.maxTtl "signing_keys" $keys -}}
{{- if .Values.broker.credentials.issuer -}}
{{- $_ := set $credentials "issuer" .Values.broker.credentials.issuer -}}
{{- end -}}
{{- if .Values.broker.credentials.redeemers -}}
{{- $_ := set $credentials "redeemers" .Values.broker.credentials.redeemers -}}
{{- end -}}
{{- $config := dict
  "trust_domain" .Values.trustDomain
  "log_level" .Values.broker.logLevel
  "grpc" (dict "listen" (printf "0.0.0.0:%d" (int .Values.broker.ports.grpc)))
  "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.broker.ports.http)))
  "health" (dict "grpc_listen" (printf "0.0.0.0:%d" (int .Values.broker.ports.health)))
  "identity" $identity
  "redis" $redis
  "policy" (dict "file" (printf "/etc/countersign/policy/%s" .Values.policy.key))
  "principals" (dict "file" (printf "/etc/countersign/principals/%s" .Values.principals.key))
  "credentials" $credentials
  "requests" (dict "poll_interval" .Values.broker.requests.pollInterval)
-}}
{{- if .Values.console.enabled -}}
{{- $console := dict "enabled" true "listen" (printf "0.0.0.0:%d" (int .Values.broker.ports.console)) "public_url" .Values.console.publicUrl "sign_in_link_ttl" .Values.console.signInLinkTtl "slack_sign_in_links" .Values.console.slackSignInLinks "session" (dict "idle_timeout" .Values.console.sessionIdleTimeout) "rate_limits" (dict "per_ip" (dict "per_minute" (int .Values.console.rateLimits.perIp.perMinute) "burst" (int .Values.console.rateLimits.perIp.burst)) "per_principal" (dict "per_minute" (int .Values.console.rateLimits.perPrincipal.perMinute) "burst" (int .Values.console.rateLimits.perPrincipal.burst)) "trusted_proxies" .Values.console.rateLimits.trustedProxies) -}}
{{- if .Values.console.oidc.enabled -}}
{{- $_ := set $console "oidc" (dict "issuer" .Values.console.oidc.issuer "client_id" .Values.console.oidc.clientId "claim" .Values.console.oidc.claim "scopes" .Values.console.oidc.scopes "display_name" .Values.console.oidc.displayName) -}}
{{- end -}}
{{- $_ := set $config "console" $console -}}
{{- end -}}
{{- include "countersign.checkExtraConfig" (dict "config" $config "extra" .Values.broker.extraConfig) -}}
{{- toYaml (mergeOverwrite $config .Values.broker.extraConfig) -}}
{{- end -}}

{{/* DNS name of Redis pod i (mode sentinel), through its headless Service. */}}
{{- define "countersign.redisHost" -}}
{{- $f := include "countersign.fullname" .root -}}
{{- printf "%s-redis-%d.%s-redis.%s.svc.cluster.local" $f (int .i) $f .root.Release.Namespace -}}
{{- end -}}

{{/* DNS name of sentinel i (mode sentinel), through its headless Service. */}}
{{- define "countersign.sentinelHost" -}}
{{- $f := include "countersign.fullname" .root -}}
{{- printf "%s-sentinel-%d.%s-sentinel.%s.svc.cluster.local" $f (int .i) $f .root.Release.Namespace -}}
{{- end -}}
