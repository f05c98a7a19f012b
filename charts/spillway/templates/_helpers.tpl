{{/*
Names. spillway's objects have fixed names: the operator finds its webhook Service (spillway-webhook), its TLS
Secret (spillway-webhook-tls), its webhook configurations (spillway) and its leader Lease by these names, so a
cluster has one spillway release.
*/}}
{{- define "spillway.controllerName" -}}spillway-controller{{- end }}
{{- define "spillway.virtualNodeName" -}}spillway-virtual-node{{- end }}
{{- define "spillway.kubeProxyName" -}}spillway-kube-proxy{{- end }}
{{- define "spillway.webhookServiceName" -}}spillway-webhook{{- end }}
{{- define "spillway.webhookSecretName" -}}spillway-webhook-tls{{- end }}
{{- define "spillway.webhookConfigurationName" -}}spillway{{- end }}
{{- define "spillway.leaderLeaseName" -}}spillway-elasticworkload-controller{{- end }}

{{- define "spillway.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "spillway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels on every object; call with (dict "root" $ "component" "controller"). */}}
{{- define "spillway.labels" -}}
helm.sh/chart: {{ include "spillway.chart" .root }}
app.kubernetes.io/name: spillway
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: spillway
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "controller"). */}}
{{- define "spillway.selectorLabels" -}}
app.kubernetes.io/name: spillway
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Pod Security Standard "restricted": non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp,
read-only root filesystem (the operator writes nothing to disk).
*/}}
{{- define "spillway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "spillway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
spillway's own pods never run on a virtual node: the webhooks must answer while the virtual nodes are down,
and a virtual node cannot host the process that serves it.
*/}}
{{- define "spillway.notOnVirtualNodes" -}}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          - key: spillway.dev/virtual-node
            operator: NotIn
            values: ["true"]
{{- end }}

{{/*
"true" when the ECI kube-proxy sidecar is on and some virtual node uses eci (else empty): only then do its
ServiceAccount and RBAC exist. Call with the root context.
*/}}
{{- define "spillway.kubeProxyEnabled" -}}
{{- $eci := false }}
{{- range .Values.virtualNodes }}{{ if eq .provider "eci" }}{{ $eci = true }}{{ end }}{{ end }}
{{- if and $eci .Values.providers.eci.kubeProxy.enabled }}true{{ end }}
{{- end }}

{{/* The Node name of a virtual node entry. */}}
{{- define "spillway.virtualNode.nodeName" -}}spillway-{{ .name }}{{- end }}

{{/* The workload name of a virtual node entry. */}}
{{- define "spillway.virtualNode.workloadName" -}}spillway-vn-{{ .name }}{{- end }}

{{/* The webhooks' clientConfig for `path`; call with (dict "root" $ "path" "/mutate-pods"). */}}
{{- define "spillway.webhookClientConfig" -}}
service:
  name: {{ include "spillway.webhookServiceName" .root }}
  namespace: {{ .root.Release.Namespace }}
  port: {{ .root.Values.webhook.service.port }}
  path: {{ .path }}
{{- end }}

{{/* The namespaceSelector of every webhook, plus `extra` match expressions (a list). */}}
{{- define "spillway.webhookNamespaceSelector" -}}
matchExpressions:
  # kubernetes.io/metadata.name is set by the apiserver on every namespace and cannot be forged.
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (concat (list "kube-system" "kube-node-lease" .root.Release.Namespace) .root.Values.webhook.excludedNamespaces | uniq) }}
      - {{ . | quote }}
      {{- end }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The development-only fake ECI endpoint's Service, Deployment and credentials Secret (fakeEci.enabled). */}}
{{- define "spillway.fakeEciName" -}}spillway-fake-eci{{- end }}
