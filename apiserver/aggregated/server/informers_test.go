package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// TestTrimKeepsWhatViewsRead: the cache keeps, of a pod, exactly what the views and
// previews read, and drops the rest.
func TestTrimKeepsWhatViewsRead(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: "alice", Labels: map[string]string{"role": "frontend"},
			Annotations: map[string]string{"big": "x"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.PodSpec{NodeName: "node1", HostNetwork: false, Containers: []corev1.Container{
			{Name: "app", Image: "img", Env: []corev1.EnvVar{{Name: "A"}}, Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 443}}},
			{Name: "sidecar", Image: "img"},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "198.18.1.10", PodIPs: []corev1.PodIP{{IP: "198.18.1.10"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady}}},
	}
	got, err := trim(pod)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: "alice", Labels: map[string]string{"role": "frontend"}},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{
			{Name: "app", Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 443}}},
		}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "198.18.1.10", PodIPs: []corev1.PodIP{{IP: "198.18.1.10"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("trimmed pod (-want +got):\n%s", diff)
	}
}

func TestHandleDeletionsTheInformerMissed(t *testing.T) {
	var set, deleted []string
	h := handle(func(p *corev1.Pod) { set = append(set, p.Name) }, func(p *corev1.Pod) { deleted = append(deleted, p.Name) })
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	h.OnAdd(p, true)
	h.OnUpdate(p, p)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: p})
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/b", Obj: "not a pod"})
	if diff := cmp.Diff([]any{[]string{"a", "a"}, []string{"a"}}, []any{set, deleted}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
