{{- define "ordinal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ordinal.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ordinal.labels" -}}
{{ include "ordinal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ordinal.serviceAccountName" -}}
{{- default (include "ordinal.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Rules on the objects Ordinal manages; granted cluster-wide or per watched namespace. */}}
{{- define "ordinal.rules" -}}
- apiGroups: ["ordinal.dev"]
  resources: [redisreplications, mysqlclusters, backups, backupschedules]
  verbs: [get, list, watch, patch, update]
- apiGroups: ["ordinal.dev"]
  resources: [redisreplications/status, mysqlclusters/status, backups/status, backupschedules/status]
  verbs: [get, patch, update]
- apiGroups: ["ordinal.dev"]
  resources: [redisreplications/finalizers, mysqlclusters/finalizers, backups/finalizers, backupschedules/finalizers]
  verbs: [update]
- apiGroups: ["ordinal.dev"]
  resources: [backups]
  verbs: [create, delete]
- apiGroups: ["apps"]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: ["apps"]
  resources: [deployments]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, patch, delete]
- apiGroups: ["storage.k8s.io"]
  resources: [storageclasses]
  verbs: [get, list]
- apiGroups: ["policy"]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
- apiGroups: ["batch"]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: ["events.k8s.io"]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
