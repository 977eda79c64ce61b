package certs

// ServiceDNSNames are the names a client inside the cluster may use for the Service
// namespace/service, and so the names its serving certificate must carry:
// kube-apiserver dials a webhook or an APIService at service.namespace.svc.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}
