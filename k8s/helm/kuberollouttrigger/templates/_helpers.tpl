{{/*
Names are fixed, not derived from the release: the admission policy matches
the worker by its ServiceAccount name (kuberollouttrigger-worker, in any
namespace), and the ClusterRole and the policy are cluster-scoped. So install
one release per cluster.
*/}}

{{- define "krt.labels" -}}
app.kubernetes.io/name: kuberollouttrigger
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The image reference: repository:tag, or repository:tag@digest when a digest is given. */}}
{{- define "krt.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- with .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .) -}}
{{- fail (printf "image.digest must be sha256:<64 lowercase hex>, not %q" .) -}}
{{- end -}}
{{- printf "%s:%s@%s" $.Values.image.repository $tag . -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end }}

{{- define "krt.valkeyAddr" -}}
{{- if and .Values.valkey.addr .Values.valkey.clusterNodes -}}
{{- fail "valkey.addr and valkey.clusterNodes exclude each other: set clusterNodes for a Valkey Cluster, addr for one server" -}}
{{- end -}}
{{- if .Values.valkey.addr -}}
{{- .Values.valkey.addr -}}
{{- else if .Values.valkey.clusterNodes -}}
{{- else if .Values.valkey.quickstart.enabled -}}
{{- printf "kuberollouttrigger-valkey.%s.svc:6379" .Release.Namespace -}}
{{- end -}}
{{- end }}

{{/* Settings both modes read, as a dict NAME: value (empty values are left out later). */}}
{{- define "krt.sharedEnv" -}}
{{- $v := .Values -}}
{{- $env := dict
  "LOG_LEVEL" $v.logLevel
  "VALKEY_ADDR" (include "krt.valkeyAddr" .)
  "VALKEY_CLUSTER_NODES" (join "," $v.valkey.clusterNodes)
  "VALKEY_CHANNEL" $v.valkey.channel
  "VALKEY_USERNAME" $v.valkey.username
  "VALKEY_TLS_ENABLED" (ternary "true" "" (eq (toString $v.valkey.tls) "true"))
  "ALLOWED_IMAGE_PREFIX" (join "," $v.allowedImagePrefixes)
-}}
{{- toYaml (mergeOverwrite $env $v.env) -}}
{{- end }}

{{- define "krt.sharedSecretEnv" -}}
{{- $secrets := dict -}}
{{- with .Values.valkey.passwordSecret.name -}}
{{- $_ := set $secrets "VALKEY_PASSWORD" (dict "name" . "key" $.Values.valkey.passwordSecret.key) -}}
{{- end -}}
{{- toYaml (mergeOverwrite $secrets .Values.envFromSecrets) -}}
{{- end }}

{{/*
A container's env list from a dict of values and a dict of Secret references
(NAME: {name, key}), sorted by name. A setting given both ways is an error:
Kubernetes would keep the last one and warn.
*/}}
{{- define "krt.envList" -}}
{{- $plain := .plain -}}
{{- range $name, $value := $plain }}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- range $name, $ref := .secrets }}
{{- if and (hasKey $plain $name) (ne (toString (get $plain $name)) "") }}
{{- fail (printf "%s is set both as a value and from a Secret: keep one" $name) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "envFromSecrets %s needs the Secret's name" $name) $ref.name }}
      key: {{ required (printf "envFromSecrets %s needs the Secret's key" $name) $ref.key }}
{{- end }}
{{- end }}

{{- define "krt.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "krt.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* nodeSelector, tolerations and the like, shared by both Deployments. */}}
{{- define "krt.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
