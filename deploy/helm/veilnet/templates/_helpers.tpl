{{- define "veilnet.labels" -}}
app.kubernetes.io/name: veilnet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "veilnet.podCommon" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ .Release.Name }}-veilnet
env:
  - name: VEILNET_DATABASE__URL
    valueFrom:
      secretKeyRef: {name: {{ .Values.database.existingSecret }}, key: url}
  - name: VEILNET_WALLET__COLDKEY_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ .Values.wallets.existingSecret }}, key: coldkey-password, optional: true}
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
