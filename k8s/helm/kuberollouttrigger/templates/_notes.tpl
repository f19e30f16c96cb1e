{{/*
What `helm install` and `helm upgrade` print (NOTES.txt). A define of its own
so tests/helm/chart_test.ts can render it without a cluster.
*/}}
{{- define "krt.notes" -}}
kuberollouttrigger {{ .Chart.AppVersion }} in namespace {{ .Release.Namespace }}.
{{- $unsigned := include "krt.unsignedParts" . | fromYamlArray }}
{{- if and .Values.insecureAllowUnsignedMessages $unsigned }}

WARNING: INSECURE, MESSAGES ARE NOT SIGNED (insecureAllowUnsignedMessages=true).
Missing: {{ join ", " $unsigned }}.
Anyone who can write to Valkey can restart every Deployment that runs an
allowed image and make web report rollouts that never happened. Make the keys
(docs/deployment.md, "Signing keys"), set them, and remove
insecureAllowUnsignedMessages.
{{- else if .Values.insecureAllowUnsignedMessages }}

insecureAllowUnsignedMessages is set but every signing key is given: it has no
effect here; remove it.
{{- end }}
{{- $missing := list }}
{{- if empty .Values.allowedImagePrefixes }}{{ $missing = append $missing "allowedImagePrefixes" }}{{ end }}
{{- if not (include "krt.valkeyAddr" .) }}{{ $missing = append $missing "valkey.addr (or valkey.quickstart.enabled=true)" }}{{ end }}
{{- if .Values.web.enabled }}
{{- if not .Values.web.oidc.audience }}{{ $missing = append $missing "web.oidc.audience" }}{{ end }}
{{- if not .Values.web.oidc.allowedOrg }}{{ $missing = append $missing "web.oidc.allowedOrg" }}{{ end }}
{{- end }}
{{- if $missing }}

NOT READY: set {{ join ", " $missing }}; until then the pods exit with ERR_CONFIG.
{{- end }}
{{- if .Values.web.enabled }}

Expose the Service kuberollouttrigger-web to GitHub over HTTPS (ingress or
gateway), then call it from a workflow: see docs/github-actions.md.
{{- end }}
{{- if .Values.valkey.quickstart.enabled }}

The quickstart Valkey has no password, no TLS and no persistence: trials only.
{{- end }}
{{- end }}
