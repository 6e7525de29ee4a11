{{/*
Refuses values that pass values.schema.json but that the broker would refuse at start-up
(CrashLoopBackOff) or that would wedge the release, with a message that names the value and
what is expected. The limits are the broker's own (broker/src/config/config.ts); the chart
tests compare both on the same values (test/chart/helm-chart.test.ts).
*/}}

{{/* A duration in the broker's syntax ("90s", "1h30m", "250ms") in milliseconds; -1 when malformed. */}}
{{- define "countersign.durationMs" -}}
{{- $text := toString . -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+$" $text) -}}
-1
{{- else -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 -}}
{{- $ms := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)" $text -1 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" . "" -}}
{{- $ms = addf $ms (mulf $number (get $units $unit)) -}}
{{- end -}}
{{- round $ms 0 | int64 -}}
{{- end -}}
{{- end -}}

{{/* Fails unless value (a duration) lies within [min, max] ms. Args: value name key min max minText maxText. */}}
{{- define "countersign.checkDuration" -}}
{{- $ms := include "countersign.durationMs" .value | int64 -}}
{{- if lt $ms 0 -}}
{{- fail (printf "%s=%v is not a duration: expected e.g. \"30s\", \"5m\" or \"1h\"" .name .value) -}}
{{- end -}}
{{- if or (lt $ms (int64 .min)) (gt $ms (int64 .max)) -}}
{{- fail (printf "%s=%v is out of range: the broker accepts %s to %s (%s in its config.yaml) and would not start" .name .value .minText .maxText .key) -}}
{{- end -}}
{{- end -}}

{{/* Which value sets each config.yaml key the chart writes, for the extraConfig message. */}}
{{- define "countersign.configOwners" -}}
trust_domain: trustDomain
log_level: broker.logLevel
grpc.listen: broker.ports.grpc
http.listen: broker.ports.http
health.grpc_listen: broker.ports.health
identity.svid: spiffe.mode
identity.bundles: spiffe.trustBundle and spiffe.federation
redis.url: redis.mode and redis.external.url
redis.prefix: redis.prefix
redis.password_file: redis.external.existingSecret
redis.sentinel: redis.external.sentinel or redis.mode sentinel
redis.cluster: redis.external.cluster
redis.durability: redis.durability
policy.file: policy.key
principals.file: principals.key
credentials.default_audience: broker.credentials.defaultAudience
credentials.default_ttl: broker.credentials.defaultTtl
credentials.max_ttl: broker.credentials.maxTtl
credentials.issuer: broker.credentials.issuer
credentials.signing_keys: signingKeys
requests.poll_interval: broker.requests.pollInterval
console.enabled: console.enabled
console.listen: broker.ports.console
console.public_url: console.publicUrl
console.sign_in_link_ttl: console.signInLinkTtl
console.slack_sign_in_links: console.slackSignInLinks
console.rate_limits: console.rateLimits
console.session: console.sessionIdleTimeout
console.oidc: console.oidc
{{- end -}}

{{/* broker.extraConfig may add keys, not replace the ones the chart writes from its values. */}}
{{- define "countersign.checkExtraConfig" -}}
{{- $config := .config -}}
{{- $owners := include "countersign.configOwners" . | fromYaml -}}
{{- range $key, $extra := .extra -}}
{{- if hasKey $config $key -}}
{{- $ours := get $config $key -}}
{{- if and (kindIs "map" $ours) (kindIs "map" $extra) -}}
{{- range $sub, $_ := $extra -}}
{{- if hasKey $ours $sub -}}
{{- $path := printf "%s.%s" $key $sub -}}
{{- fail (printf "broker.extraConfig.%s would override what the chart writes from %s; set that value instead" $path (get $owners $path | default "its values")) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- fail (printf "broker.extraConfig.%s would override what the chart writes from %s; set that value instead" $key (get $owners $key | default "its values")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "countersign.validate" -}}
{{- $v := .Values -}}
{{- if and $v.oidcExchange.issuers (not $v.oidcExchange.ca.existingSecret) -}}
{{- fail "oidcExchange.issuers needs oidcExchange.ca.existingSecret: a kubernetes.io/tls Secret holding the intermediate CA that signs exchanged SVIDs (identity.oidc_ca)" -}}
{{- end -}}
{{- if and $v.oidcExchange.jwks.configMap $v.oidcExchange.jwks.secret -}}
{{- fail "oidcExchange.jwks: set configMap or secret, not both (both would be mounted at /etc/countersign/oidc-jwks)" -}}
{{- end -}}
{{- range $v.oidcExchange.issuers -}}
{{- if and .jwks_file (not (or $v.oidcExchange.jwks.configMap $v.oidcExchange.jwks.secret)) -}}
{{- fail (printf "oidcExchange.issuers[%s].jwks_file=%s needs oidcExchange.jwks.configMap or oidcExchange.jwks.secret: the ConfigMap or Secret holding that file, mounted at /etc/countersign/oidc-jwks" .name .jwks_file) -}}
{{- end -}}
{{- end -}}
{{- $c := $v.broker.credentials -}}
{{- include "countersign.checkDuration" (dict "value" $c.defaultTtl "name" "broker.credentials.defaultTtl" "key" "credentials.default_ttl" "min" 10000 "max" 86400000 "minText" "10s" "maxText" "24h") -}}
{{- include "countersign.checkDuration" (dict "value" $c.maxTtl "name" "broker.credentials.maxTtl" "key" "credentials.max_ttl" "min" 10000 "max" 86400000 "minText" "10s" "maxText" "24h") -}}
{{- if gt (include "countersign.durationMs" $c.defaultTtl | int64) (include "countersign.durationMs" $c.maxTtl | int64) -}}
{{- fail (printf "broker.credentials.defaultTtl=%s exceeds broker.credentials.maxTtl=%s: the default lifetime must not exceed the maximum" $c.defaultTtl $c.maxTtl) -}}
{{- end -}}
{{- if and (eq $v.redis.mode "external") $v.redis.external.cluster.enabled -}}
{{- if $v.redis.external.sentinel.enabled -}}
{{- fail "redis.external.cluster.enabled and redis.external.sentinel.enabled exclude each other: a Redis Cluster fails over by itself" -}}
{{- end -}}
{{- if not (regexMatch "^\\{[^{}]+\\}" $v.redis.prefix) -}}
{{- fail (printf "redis.prefix=%q: on Redis Cluster (redis.external.cluster.enabled) the prefix must start with a hash tag, e.g. {countersign}:, so that every key shares one slot" $v.redis.prefix) -}}
{{- end -}}
{{- end -}}
{{- include "countersign.checkDuration" (dict "value" $v.redis.durability.timeout "name" "redis.durability.timeout" "key" "redis.durability.timeout" "min" 10 "max" 60000 "minText" "10ms" "maxText" "1m") -}}
{{- if and (eq $v.redis.mode "sentinel") (lt (sub (int $v.redis.sentinel.replicas) 2) (int $v.redis.durability.replicas)) -}}
{{- fail (printf "redis.sentinel.replicas=%d with redis.durability.replicas=%d: after a failover the new primary has %d replica(s) and every write would fail until the lost pod is back; use redis.sentinel.replicas of at least %d" (int $v.redis.sentinel.replicas) (int $v.redis.durability.replicas) (sub (int $v.redis.sentinel.replicas) 2) (add (int $v.redis.durability.replicas) 2)) -}}
{{- end -}}
{{- include "countersign.checkDuration" (dict "value" $v.broker.requests.pollInterval "name" "broker.requests.pollInterval" "key" "requests.poll_interval" "min" 200 "max" 60000 "minText" "200ms" "maxText" "1m") -}}
{{- $ports := $v.broker.ports -}}
{{- $pairs := list (list "grpc" "http") (list "grpc" "health") (list "http" "health") -}}
{{- if $v.console.enabled -}}
{{- $pairs = concat $pairs (list (list "grpc" "console") (list "http" "console") (list "health" "console")) -}}
{{- end -}}
{{- range $pair := $pairs -}}
{{- $a := index $pair 0 -}}
{{- $b := index $pair 1 -}}
{{- if eq (int (get $ports $a)) (int (get $ports $b)) -}}
{{- fail (printf "broker.ports.%s and broker.ports.%s are both %d; each listener needs its own port" $a $b (int (get $ports $a))) -}}
{{- end -}}
{{- end -}}
{{- if $v.console.enabled -}}
{{- include "countersign.checkDuration" (dict "value" $v.console.signInLinkTtl "name" "console.signInLinkTtl" "key" "console.sign_in_link_ttl" "min" 60000 "max" 86400000 "minText" "1m" "maxText" "24h") -}}
{{- include "countersign.checkDuration" (dict "value" $v.console.sessionIdleTimeout "name" "console.sessionIdleTimeout" "key" "console.session.idle_timeout" "min" 60000 "max" 43200000 "minText" "1m" "maxText" "12h") -}}
{{- end -}}
{{- if eq $v.spiffe.mode "secret" -}}
{{- if not $v.spiffe.secret.name -}}
{{- fail "spiffe.mode=secret needs spiffe.secret.name: the kubernetes.io/tls Secret holding the broker's X.509-SVID" -}}
{{- end -}}
{{- end -}}
{{- if and (ne $v.spiffe.mode "csi-driver") (not $v.spiffe.trustBundle.configMap) -}}
{{- fail (printf "spiffe.mode=%s needs spiffe.trustBundle.configMap: the ConfigMap holding the CA bundle of trustDomain %s (only the csi-driver mode gets it from the Workload API)" $v.spiffe.mode $v.trustDomain) -}}
{{- end -}}
{{- if and $v.podDisruptionBudget.enabled (gt (int $v.broker.replicaCount) 1) -}}
{{- $min := $v.podDisruptionBudget.minAvailable -}}
{{- $replicas := int $v.broker.replicaCount -}}
{{- $blocks := false -}}
{{- if and (kindIs "string" $min) (hasSuffix "%" $min) -}}
{{- $blocks = ge (int (trimSuffix "%" $min)) 100 -}}
{{- else -}}
{{- $blocks = ge (int $min) $replicas -}}
{{- end -}}
{{- if $blocks -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%v with broker.replicaCount=%d would never let a node drain evict a broker pod; use at most %d" $min $replicas (sub $replicas 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
