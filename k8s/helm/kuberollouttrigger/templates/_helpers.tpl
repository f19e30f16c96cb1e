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
A container's env list from a dict of values and dicts of Secret and
ConfigMap references (NAME: {name, key}), sorted by name within each. A
setting given two ways is an error: Kubernetes would keep the last one and
warn. The references are never optional: a missing Secret or ConfigMap keeps
the pod from starting (CreateContainerConfigError) rather than starting it
without the setting.
*/}}
{{- define "krt.envList" -}}
{{- $plain := .plain -}}
{{- $configMaps := .configMaps | default dict -}}
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
{{- if hasKey $configMaps $name }}
{{- fail (printf "%s is set both from a ConfigMap and from a Secret: keep one" $name) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "envFromSecrets %s needs the Secret's name" $name) $ref.name }}
      key: {{ required (printf "envFromSecrets %s needs the Secret's key" $name) $ref.key }}
{{- end }}
{{- range $name, $ref := $configMaps }}
{{- if and (hasKey $plain $name) (ne (toString (get $plain $name)) "") }}
{{- fail (printf "%s is set both as a value and from a ConfigMap: keep one" $name) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    configMapKeyRef:
      name: {{ $ref.name }}
      key: {{ required (printf "%s needs the ConfigMap's key" $name) $ref.key }}
{{- end }}
{{- end }}

{{/*
Signed messages (docs/deployment.md, "Signing keys"): web signs events with
EVENT_SIGNING_KEY and verifies reports with REPORT_VERIFY_KEYS; each worker
verifies events with EVENT_VERIFY_KEYS and signs its reports with its own
REPORT_SIGNING_KEY. The chart never holds a private key: those come from
Secrets by secretKeyRef.
*/}}

{{/*
web's REPORT_VERIFY_KEYS from signing.reports.verifyKeys (a list of
{cluster, key} or a string of cluster=key entries), checked and joined as
"cluster=key,cluster=key"; empty when not given inline.
*/}}
{{- define "krt.reportVerifyKeys" -}}
{{- $given := .Values.signing.reports.verifyKeys -}}
{{- $entries := list -}}
{{- if kindIs "string" $given -}}
{{- range regexSplit "[,\\s]+" (trim $given) -1 -}}
{{- if . -}}
{{- if not (regexMatch "^[^=]+=.+$" .) -}}
{{- fail (printf "signing.reports.verifyKeys entry %q is not <cluster>=<public key>" .) -}}
{{- end -}}
{{- $entries = append $entries (dict "cluster" (regexReplaceAll "=.*$" . "") "key" (regexReplaceAll "^[^=]*=" . "")) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- range $i, $e := $given -}}
{{- if not (kindIs "map" $e) -}}
{{- fail (printf "signing.reports.verifyKeys[%d] must be {cluster: <name>, key: <public key>}" $i) -}}
{{- end -}}
{{- $entries = append $entries (dict "cluster" (toString ($e.cluster | default "")) "key" (toString ($e.key | default "") | trim)) -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $entries -}}
{{- if not (regexMatch "^[A-Za-z0-9._-]{1,63}$" .cluster) -}}
{{- fail (printf "signing.reports.verifyKeys: cluster %q must be 1-63 letters, digits, '.', '_' or '-' (the worker's CLUSTER_NAME)" .cluster) -}}
{{- end -}}
{{- /* The SPKI DER of an Ed25519 key in standard base64 (the body line of `openssl pkey -pubout`), or a JWK's x. */ -}}
{{- if not (regexMatch "^(MCowBQYDK2VwAyEA[A-Za-z0-9+/]{43}=|[A-Za-z0-9_-]{43})$" .key) -}}
{{- fail (printf "signing.reports.verifyKeys: the key of cluster %q must be one base64 line, the second line of `openssl pkey -in report-signing.pem -pubout` (60 characters starting MCowBQYDK2VwAyEA) or a JWK's x (43 characters), not the whole PEM block or a private key" .cluster) -}}
{{- end -}}
{{- $out = append $out (printf "%s=%s" .cluster .key) -}}
{{- end -}}
{{- join "," $out -}}
{{- end }}

{{/* The cluster names of web's inline REPORT_VERIFY_KEYS, as a YAML list. */}}
{{- define "krt.reportKeyClusters" -}}
{{- $names := list -}}
{{- range splitList "," (include "krt.reportVerifyKeys" .) -}}
{{- if . }}{{ $names = append $names (regexReplaceAll "=.*$" . "") }}{{ end -}}
{{- end -}}
{{- toYaml (uniq $names) -}}
{{- end }}

{{/* web's env as {plain, secrets, configMaps}: shared, its own, signing, then web.env and web.envFromSecrets. */}}
{{- define "krt.webEnv" -}}
{{- $web := .Values.web -}}
{{- $s := .Values.signing -}}
{{- $plain := include "krt.sharedEnv" . | fromYaml -}}
{{- $secrets := include "krt.sharedSecretEnv" . | fromYaml -}}
{{- $configMaps := dict -}}
{{- $_ := set $plain "GITHUB_OIDC_AUDIENCE" $web.oidc.audience -}}
{{- $_ = set $plain "GITHUB_ALLOWED_ORG" $web.oidc.allowedOrg -}}
{{- $_ = set $plain "GITHUB_ALLOWED_OWNER_IDS" (join "," $web.oidc.allowedOwnerIds) -}}
{{- $_ = set $plain "GITHUB_ALLOWED_REPOSITORIES" (join "," $web.oidc.allowedRepositories) -}}
{{- $_ = set $plain "GITHUB_ALLOWED_REFS" (join "," $web.oidc.allowedRefs) -}}
{{- with $s.events.signingKeySecret.name -}}
{{- $_ = set $secrets "EVENT_SIGNING_KEY" (dict "name" . "key" $s.events.signingKeySecret.key) -}}
{{- end -}}
{{- $ways := list -}}
{{- with include "krt.reportVerifyKeys" . -}}
{{- $ways = append $ways "verifyKeys" -}}
{{- $_ = set $plain "REPORT_VERIFY_KEYS" . -}}
{{- end -}}
{{- with $s.reports.verifyKeysConfigMap.name -}}
{{- $ways = append $ways "verifyKeysConfigMap" -}}
{{- $_ = set $configMaps "REPORT_VERIFY_KEYS" (dict "name" . "key" $s.reports.verifyKeysConfigMap.key) -}}
{{- end -}}
{{- with $s.reports.verifyKeysSecret.name -}}
{{- $ways = append $ways "verifyKeysSecret" -}}
{{- $_ = set $secrets "REPORT_VERIFY_KEYS" (dict "name" . "key" $s.reports.verifyKeysSecret.key) -}}
{{- end -}}
{{- if gt (len $ways) 1 -}}
{{- fail (printf "signing.reports.%s exclude each other: give web's REPORT_VERIFY_KEYS one way" (join " and signing.reports." $ways)) -}}
{{- end -}}
{{- $plain = mergeOverwrite $plain $web.env -}}
{{- $secrets = mergeOverwrite $secrets $web.envFromSecrets -}}
{{- toYaml (dict "plain" $plain "secrets" $secrets "configMaps" $configMaps) -}}
{{- end }}

{{/* The worker's env as {plain, secrets, configMaps}: shared, its own, signing, then worker.env and worker.envFromSecrets. */}}
{{- define "krt.workerEnv" -}}
{{- $worker := .Values.worker -}}
{{- $s := .Values.signing -}}
{{- $plain := include "krt.sharedEnv" . | fromYaml -}}
{{- $secrets := include "krt.sharedSecretEnv" . | fromYaml -}}
{{- $configMaps := dict -}}
{{- $_ := set $plain "WATCH_NAMESPACES" (join "," $worker.watchNamespaces) -}}
{{- $_ = set $plain "CLUSTER_NAME" $worker.clusterName -}}
{{- $_ = set $plain "DRY_RUN" (ternary "true" "" (eq (toString $worker.dryRun) "true")) -}}
{{- with $s.events.verifyKeysConfigMap.name -}}
{{- $_ = set $configMaps "EVENT_VERIFY_KEYS" (dict "name" . "key" $s.events.verifyKeysConfigMap.key) -}}
{{- end -}}
{{- with $s.reports.signingKeySecret.name -}}
{{- $_ = set $secrets "REPORT_SIGNING_KEY" (dict "name" . "key" $s.reports.signingKeySecret.key) -}}
{{- end -}}
{{- $plain = mergeOverwrite $plain $worker.env -}}
{{- $secrets = mergeOverwrite $secrets $worker.envFromSecrets -}}
{{- toYaml (dict "plain" $plain "secrets" $secrets "configMaps" $configMaps) -}}
{{- end }}

{{/* "true" when an env dict from krt.webEnv/krt.workerEnv (.env) gives the setting .name. */}}
{{- define "krt.envGives" -}}
{{- $env := .env -}}
{{- if or (ne (toString (get $env.plain .name)) "") (hasKey $env.secrets .name) (hasKey $env.configMaps .name) -}}
true
{{- end -}}
{{- end }}

{{/* The signing settings an enabled mode lacks, as a YAML list of "value (SETTING)". */}}
{{- define "krt.unsignedParts" -}}
{{- $missing := list -}}
{{- if .Values.web.enabled -}}
{{- $env := include "krt.webEnv" . | fromYaml -}}
{{- if not (include "krt.envGives" (dict "env" $env "name" "EVENT_SIGNING_KEY")) -}}
{{- $missing = append $missing "signing.events.signingKeySecret.name (web's EVENT_SIGNING_KEY)" -}}
{{- end -}}
{{- if not (include "krt.envGives" (dict "env" $env "name" "REPORT_VERIFY_KEYS")) -}}
{{- $missing = append $missing "signing.reports.verifyKeys (web's REPORT_VERIFY_KEYS)" -}}
{{- end -}}
{{- end -}}
{{- if .Values.worker.enabled -}}
{{- $env := include "krt.workerEnv" . | fromYaml -}}
{{- if not (include "krt.envGives" (dict "env" $env "name" "EVENT_VERIFY_KEYS")) -}}
{{- $missing = append $missing "signing.events.verifyKeysConfigMap.name (the worker's EVENT_VERIFY_KEYS)" -}}
{{- end -}}
{{- if not (include "krt.envGives" (dict "env" $env "name" "REPORT_SIGNING_KEY")) -}}
{{- $missing = append $missing "signing.reports.signingKeySecret.name (the worker's REPORT_SIGNING_KEY)" -}}
{{- end -}}
{{- end -}}
{{- toYaml $missing -}}
{{- end }}

{{/*
Security: refuses to render a mode that would run unsigned, unless
insecureAllowUnsignedMessages is set. Unsigned, anyone who can write to Valkey
can restart Deployments (events) and fake rollout outcomes (reports). Also
refuses a private key given as a plain value, which would put it into the
Deployment spec, readable by anyone who may read Deployments.
*/}}
{{- define "krt.requireSigning" -}}
{{- $v := .Values -}}
{{- if not (kindIs "bool" $v.insecureAllowUnsignedMessages) -}}
{{- fail (printf "insecureAllowUnsignedMessages must be true or false, not %q" (toString $v.insecureAllowUnsignedMessages)) -}}
{{- end -}}
{{- $modes := list -}}
{{- if $v.web.enabled }}{{ $modes = append $modes (list "web" (include "krt.webEnv" . | fromYaml)) }}{{ end -}}
{{- if $v.worker.enabled }}{{ $modes = append $modes (list "worker" (include "krt.workerEnv" . | fromYaml)) }}{{ end -}}
{{- range $modes -}}
{{- $mode := index . 0 -}}
{{- $env := index . 1 -}}
{{- range list "EVENT_SIGNING_KEY" "REPORT_SIGNING_KEY" -}}
{{- if ne (toString (get $env.plain .)) "" -}}
{{- fail (printf "%s is a private key: give it from a Secret (signing.*.signingKeySecret or %s.envFromSecrets), never as a value in env or %s.env, where anyone who can read the Deployment reads it" . $mode $mode) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.web.enabled -}}
{{- $env := include "krt.webEnv" . | fromYaml -}}
{{- $reports := include "krt.envGives" (dict "env" $env "name" "REPORT_VERIFY_KEYS") -}}
{{- if and $reports (not (include "krt.envGives" (dict "env" $env "name" "EVENT_SIGNING_KEY"))) -}}
{{- fail "web's REPORT_VERIFY_KEYS needs EVENT_SIGNING_KEY too (signing.events.signingKeySecret.name): web does not start with report keys and no event signing key" -}}
{{- end -}}
{{- $clusters := include "krt.reportKeyClusters" . | fromYamlArray -}}
{{- if $clusters -}}
{{- $workerName := toString (get (include "krt.workerEnv" . | fromYaml).plain "CLUSTER_NAME") -}}
{{- if and $v.worker.enabled $workerName (not (has $workerName $clusters)) -}}
{{- fail (printf "worker.clusterName %q has no key in signing.reports.verifyKeys (%s): web would reject this cluster's reports; add {cluster: %s, key: <its public key>}" $workerName (join ", " $clusters) $workerName) -}}
{{- end -}}
{{- range regexSplit "[,\\s]+" (toString (get $env.plain "CLUSTERS")) -1 -}}
{{- if and . (not (has . $clusters)) -}}
{{- fail (printf "CLUSTERS names %q, which has no key in signing.reports.verifyKeys (%s): web does not start with a cluster it cannot verify" . (join ", " $clusters)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $missing := include "krt.unsignedParts" . | fromYamlArray -}}
{{- if and $missing (not $v.insecureAllowUnsignedMessages) -}}
{{- fail (printf "messages would be unsigned: set %s, see docs/deployment.md \"Signing keys\"; to install unsigned anyway, set insecureAllowUnsignedMessages=true (then anyone who can write to Valkey can restart Deployments and forge rollout reports)" (join ", " $missing)) -}}
{{- end -}}
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

{{/* The labels a workload's pods are selected by (its Deployment's selector), for .component. */}}
{{- define "krt.selectorLabels" -}}
app.kubernetes.io/name: kuberollouttrigger
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
nodeSelector, tolerations and the like, shared by both Deployments: .values
is web's or the worker's values, .component its name. With replicas > 1 and
spreadAcrossNodes, pods are spread over nodes unless the values say
otherwise: a topologySpreadConstraint over kubernetes.io/hostname when no
topologySpreadConstraints are given, and a preferred podAntiAffinity when
affinity has none (kube-linter's no-anti-affinity reads only that). Both are
soft (ScheduleAnyway, preferred): a one-node cluster still runs every replica.
*/}}
{{- define "krt.scheduling" -}}
{{- $v := .values -}}
{{- $spread := and $v.spreadAcrossNodes (gt (int $v.replicas) 1) -}}
{{- $select := include "krt.selectorLabels" . | fromYaml -}}
{{- $affinity := deepCopy ($v.affinity | default dict) -}}
{{- if and $spread (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" $select) -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- $constraints := $v.topologySpreadConstraints -}}
{{- if and $spread (empty $constraints) -}}
{{- $constraints = list (dict "maxSkew" 1 "topologyKey" "kubernetes.io/hostname" "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" (dict "matchLabels" $select)) -}}
{{- end -}}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
