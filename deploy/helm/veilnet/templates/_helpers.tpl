{{- define "veilnet.labels" -}}
app.kubernetes.io/name: veilnet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* A container's common part. Call with (dict "root" $ "wallet" <values wallet> "env" <map of extra env>). */ -}}
{{- define "veilnet.podCommon" -}}
image: "{{ .root.Values.image.repository }}:{{ .root.Values.image.tag }}"
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ .root.Release.Name }}-veilnet
env:
  - name: VEILNET_DATABASE__URL
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.database.existingSecret }}, key: url}
  - name: VEILNET_WALLET__COLDKEY_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ .root.Values.wallets.existingSecret }}, key: coldkey-password, optional: true}
  - {name: VEILNET_WALLET__NAME, value: {{ .wallet.name | quote }}}
  - {name: VEILNET_WALLET__HOTKEY, value: {{ .wallet.hotkey | quote }}}
  {{- range $name, $value := .env }}
  - {name: {{ $name }}, value: {{ $value | toString | quote }}}
  {{- end }}
volumeMounts:
  - name: wallets
    mountPath: /home/veilnet/.bittensor/wallets
    readOnly: true
{{- end -}}

{{- define "veilnet.walletVolume" -}}
- name: wallets
  secret:
    secretName: {{ .Values.wallets.existingSecret }}
    {{- with .Values.wallets.items }}
    items: {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
