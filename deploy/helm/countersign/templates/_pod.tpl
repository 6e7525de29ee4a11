{{/*
The broker pod spec, shared by the API Deployment and the optional worker
Deployment. Call with (dict "root" $ "role" "all|api|worker" "component" "broker|worker").
*/}}
{{- define "countersign.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "countersign.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
terminationGracePeriodSeconds: {{ $v.broker.terminationGracePeriodSeconds }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
containers:
  - name: {{ .component }}
    image: {{ include "countersign.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: ["serve", "--config", "/etc/countersign/config/config.yaml", "--role", {{ .role | quote }}]
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    ports:
      - name: grpc
        containerPort: {{ $v.broker.ports.grpc }}
        protocol: TCP
      - name: http
        containerPort: {{ $v.broker.ports.http }}
        protocol: TCP
      - name: health
        containerPort: {{ $v.broker.ports.health }}
        protocol: TCP
      {{- if and $v.console.enabled (ne .component "worker") }}
      - name: console
        containerPort: {{ $v.broker.ports.console }}
        protocol: TCP
      {{- end }}
    env:
      - name: NODE_ENV
        value: production
      {{- if $v.tracing.otlpEndpoint }}
      - name: OTEL_EXPORTER_OTLP_ENDPOINT
        value: {{ $v.tracing.otlpEndpoint | quote }}
      - name: OTEL_SERVICE_NAME
        value: {{ $v.tracing.serviceName | quote }}
      {{- end }}
      {{- if $v.slack.enabled }}
      - name: SLACK_MODE
        value: {{ $v.slack.mode | quote }}
      - name: SLACK_BOT_TOKEN
        valueFrom: { secretKeyRef: { name: {{ $v.slack.existingSecret | quote }}, key: bot-token } }
      - name: SLACK_SIGNING_SECRET
        valueFrom: { secretKeyRef: { name: {{ $v.slack.existingSecret | quote }}, key: signing-secret } }
      {{- if eq $v.slack.mode "socket" }}
      - name: SLACK_APP_TOKEN
        valueFrom: { secretKeyRef: { name: {{ $v.slack.existingSecret | quote }}, key: app-token } }
      {{- end }}
      {{- end }}
      {{- if and $v.console.enabled $v.console.oidc.enabled $v.console.oidc.existingSecret }}
      - name: COUNTERSIGN_CONSOLE_OIDC_CLIENT_SECRET
        valueFrom: { secretKeyRef: { name: {{ $v.console.oidc.existingSecret | quote }}, key: {{ $v.console.oidc.secretKey | quote }} } }
      {{- end }}
      {{- with $v.broker.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    startupProbe:
      grpc: { port: {{ $v.broker.ports.health }} }
      periodSeconds: 2
      failureThreshold: 30
    livenessProbe:
      grpc: { port: {{ $v.broker.ports.health }}, service: liveness }
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    readinessProbe:
      grpc: { port: {{ $v.broker.ports.health }} }
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    resources:
      {{- toYaml (ternary $v.worker.resources $v.broker.resources (eq .component "worker")) | nindent 6 }}
    volumeMounts:
      - { name: config, mountPath: /etc/countersign/config, readOnly: true }
      - { name: policy, mountPath: /etc/countersign/policy, readOnly: true }
      - { name: principals, mountPath: /etc/countersign/principals, readOnly: true }
      - { name: signing-keys, mountPath: /var/run/countersign/signing-keys, readOnly: true }
      {{- if eq $v.spiffe.mode "csi-driver" }}
      - { name: spiffe-workload-api, mountPath: /spiffe-workload-api, readOnly: true }
      {{- else }}
      - { name: svid, mountPath: /var/run/countersign/svid, readOnly: true }
      {{- end }}
      {{- if $v.spiffe.trustBundle.configMap }}
      - { name: bundle-own, mountPath: /etc/countersign/bundles/own, readOnly: true }
      {{- end }}
      {{- range $i, $f := $v.spiffe.federation }}
      - { name: bundle-federated-{{ $i }}, mountPath: /etc/countersign/bundles/federated-{{ $i }}, readOnly: true }
      {{- end }}
      {{- if and (eq $v.redis.mode "external") $v.redis.external.existingSecret }}
      - { name: redis-password, mountPath: /var/run/countersign/redis, readOnly: true }
      {{- end }}
      {{- if $v.oidcExchange.issuers }}
      - { name: oidc-ca, mountPath: /var/run/countersign/oidc-ca, readOnly: true }
      {{- end }}
      {{- if and $v.oidcExchange.issuers (or $v.oidcExchange.jwks.configMap $v.oidcExchange.jwks.secret) }}
      - { name: oidc-jwks, mountPath: /etc/countersign/oidc-jwks, readOnly: true }
      {{- end }}
volumes:
  - name: config
    configMap: { name: {{ include "countersign.fullname" $root }}-config }
  - name: policy
    configMap: { name: {{ default (printf "%s-policy" (include "countersign.fullname" $root)) $v.policy.existingConfigMap }} }
  - name: principals
    configMap: { name: {{ default (printf "%s-principals" (include "countersign.fullname" $root)) $v.principals.existingConfigMap }} }
  - name: signing-keys
    secret: { secretName: {{ $v.signingKeys.existingSecret | quote }}, defaultMode: 0400 }
  {{- if eq $v.spiffe.mode "csi-driver" }}
  - name: spiffe-workload-api
    csi: { driver: {{ $v.spiffe.csiDriver.driver }}, readOnly: true }
  {{- else if eq $v.spiffe.mode "cert-manager-csi" }}
  - name: svid
    csi:
      driver: {{ $v.spiffe.certManagerCsi.driver }}
      readOnly: true
      volumeAttributes:
        spiffe.csi.cert-manager.io/fs-group: {{ $v.podSecurityContext.fsGroup | quote }}
        spiffe.csi.cert-manager.io/certificate-file: tls.crt
        spiffe.csi.cert-manager.io/privatekey-file: tls.key
        {{- with $v.spiffe.certManagerCsi.volumeAttributes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  {{- else }}
  - name: svid
    secret:
      secretName: {{ $v.spiffe.secret.name | quote }}
      defaultMode: 0400
      items:
        - { key: {{ $v.spiffe.secret.certKey }}, path: tls.crt }
        - { key: {{ $v.spiffe.secret.keyKey }}, path: tls.key }
  {{- end }}
  {{- if $v.spiffe.trustBundle.configMap }}
  - name: bundle-own
    configMap: { name: {{ $v.spiffe.trustBundle.configMap }} }
  {{- end }}
  {{- range $i, $f := $v.spiffe.federation }}
  - name: bundle-federated-{{ $i }}
    configMap: { name: {{ $f.configMap }} }
  {{- end }}
  {{- if and (eq $v.redis.mode "external") $v.redis.external.existingSecret }}
  - name: redis-password
    secret:
      secretName: {{ $v.redis.external.existingSecret | quote }}
      defaultMode: 0400
      items:
        - { key: {{ $v.redis.external.passwordKey }}, path: password }
  {{- end }}
  {{- if $v.oidcExchange.issuers }}
  - name: oidc-ca
    secret:
      secretName: {{ $v.oidcExchange.ca.existingSecret | quote }}
      defaultMode: 0400
      items:
        - { key: {{ $v.oidcExchange.ca.certKey }}, path: tls.crt }
        - { key: {{ $v.oidcExchange.ca.keyKey }}, path: tls.key }
  {{- end }}
  {{- if and $v.oidcExchange.issuers $v.oidcExchange.jwks.configMap }}
  - name: oidc-jwks
    configMap: { name: {{ $v.oidcExchange.jwks.configMap | quote }} }
  {{- else if and $v.oidcExchange.issuers $v.oidcExchange.jwks.secret }}
  - name: oidc-jwks
    secret: { secretName: {{ $v.oidcExchange.jwks.secret | quote }} }
  {{- end }}
{{- with $v.broker.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.broker.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.broker.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
  {{- if $v.broker.affinity }}
  {{- toYaml $v.broker.affinity | nindent 2 }}
  {{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "countersign.selectorLabels" $root | nindent 14 }}
              app.kubernetes.io/component: {{ .component }}
  {{- end }}
{{- end -}}
