package certs

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// fieldManager names this package in managedFields of everything it writes.
const fieldManager = "egressgw-webhook-certs"

// secretClient is the part of the Secrets API the Manager needs: read and write one
// Secret, and list and watch it to notice other writers.
type secretClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	Create(ctx context.Context, secret *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error)
	Update(ctx context.Context, secret *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

var _ secretClient = corev1client.SecretInterface(nil)

// errLostRace marks a write another writer beat. The caller re-reads and decides again,
// so a valid Secret written by another replica is adopted, never overwritten.
var errLostRace = errors.New("another writer changed the certificate Secret first")

// secretStore reads and writes the one certificate Secret.
type secretStore struct {
	client          secretClient
	namespace, name string
}

// storedSecret is the Secret as read, and whether it exists yet.
type storedSecret struct {
	*corev1.Secret
	found bool
}

// get reads the Secret; a missing one comes back empty, to be created.
func (s secretStore) get(ctx context.Context) (storedSecret, error) {
	secret, err := s.client.Get(ctx, s.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return storedSecret{Secret: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name},
			Type:       corev1.SecretTypeTLS,
		}}, nil
	case err != nil:
		return storedSecret{}, fmt.Errorf("reading Secret %s/%s: %w", s.namespace, s.name, err)
	}
	return storedSecret{Secret: secret, found: true}, nil
}

// write replaces the Secret's data. It creates a Secret that was not found, and updates
// one that was under the resourceVersion it was read at; either fails with errLostRace
// when someone else wrote first.
func (s secretStore) write(ctx context.Context, current storedSecret, data map[string][]byte) (storedSecret, error) {
	next := current.DeepCopy()
	next.Data = data
	var (
		written *corev1.Secret
		err     error
	)
	if current.found {
		written, err = s.client.Update(ctx, next, metav1.UpdateOptions{FieldManager: fieldManager})
	} else {
		written, err = s.client.Create(ctx, next, metav1.CreateOptions{FieldManager: fieldManager})
	}
	switch {
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return storedSecret{}, fmt.Errorf("%w: %w", errLostRace, err)
	case err != nil:
		return storedSecret{}, fmt.Errorf("writing Secret %s/%s: %w", s.namespace, s.name, err)
	}
	return storedSecret{Secret: written, found: true}, nil
}
