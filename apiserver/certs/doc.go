// Package certs decides which TLS certificate the webhook server (and the aggregated API
// server) presents and which CA bundle kube-apiserver trusts it with, without
// cert-manager. It keeps a self-signed CA and a serving certificate in one Secret,
// publishes the bundle as caBundle into the named ValidatingWebhookConfigurations, CRD
// conversion webhooks and APIServices, and rotates both well before they expire, on every
// replica at once.
//
// It must never serve a certificate the published bundle does not trust, never drop a CA
// from the bundle while a certificate it signed can still be valid, never overwrite a
// valid Secret another replica wrote, and never touch any field but caBundle in the
// objects it publishes to.
package certs
