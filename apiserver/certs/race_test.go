package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"
)

func TestSecretRaces(t *testing.T) {
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	later := epoch.Add(300 * day)
	tests := []struct {
		name string
		// existing says whether our own replica wrote the Secret at epoch first.
		existing bool
		// react answers the first write; other is what the other replica wrote.
		verb  string
		react func(f *fixture, other *corev1.Secret, calls int) error
		want  map[string]int
		// wantAdopted says the Secret and the served certificate end up as other's.
		wantAdopted bool
		wantErr     bool
	}{
		{
			name: "Create loses to another replica: its Secret is adopted",
			verb: "create",
			react: func(f *fixture, other *corev1.Secret, _ int) error {
				if err := f.kube.Tracker().Add(other); err != nil {
					return err
				}
				return apierrors.NewAlreadyExists(secrets.GroupResource(), testSecret)
			},
			want: map[string]int{
				"create secrets":                        1,
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantAdopted: true,
		},
		{
			name:     "renewal conflicts with another replica's renewal: its Secret is adopted, not overwritten",
			existing: true,
			verb:     "update",
			react: func(f *fixture, other *corev1.Secret, calls int) error {
				if calls > 1 {
					return errors.New("updated a second time")
				}
				if err := f.kube.Tracker().Update(secrets, other, testNamespace); err != nil {
					return err
				}
				return apierrors.NewConflict(secrets.GroupResource(), testSecret, errors.New("resourceVersion changed"))
			},
			want: map[string]int{
				"update secrets":                        1,
				"patch validatingwebhookconfigurations": 1,
				"patch customresourcedefinitions":       1,
			},
			wantAdopted: true,
		},
		{
			name:     "the Secret keeps changing under us: bounded retries, then an error",
			existing: true,
			verb:     "update",
			react: func(*fixture, *corev1.Secret, int) error {
				return apierrors.NewConflict(secrets.GroupResource(), testSecret, errors.New("resourceVersion changed"))
			},
			want:    map[string]int{"update secrets": maxAttempts},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.existing {
				f.ensure(t, f.manager(t))
			}
			f.clock.SetTime(later)
			other := otherReplicaSecret(t, later)
			calls := 0
			f.kube.PrependReactor(tt.verb, "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls++
				return true, nil, tt.react(f, other, calls)
			})
			f.clearActions()

			m := f.manager(t)
			err := m.Ensure(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Ensure() = %v, wantErr %t", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, errLostRace) {
				t.Errorf("Ensure() = %v, want it to wrap errLostRace", err)
			}
			if diff := cmp.Diff(tt.want, f.writes()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if !tt.wantAdopted {
				return
			}
			if diff := cmp.Diff(other.Data, f.secret(t).Data); diff != "" {
				t.Errorf("the other replica's Secret was overwritten (-theirs +now):\n%s", diff)
			}
			if !bytes.Equal(served(t, m).Raw, mustLeaf(t, other.Data).Raw) {
				t.Errorf("not serving the other replica's certificate")
			}
			f.requireServedTrusted(t, m)
		})
	}
}

func mustLeaf(t *testing.T, data map[string][]byte) *x509.Certificate {
	t.Helper()
	pair, err := loadKeyPair(data)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}
