package config

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The Secret that holds the secret knactor's components share (150-internal-secret.yaml). The
// routers present it to each other on forwarded calls and channel pushes, and to the
// autoscaler's stats WebSocket; nothing else in the cluster knows it.
const (
	InternalSecretName = "knactor-internal"
	InternalTokenKey   = "token"
)

// internalTokenBytes is the entropy of a generated secret: 256 bits.
const internalTokenBytes = 32

// maxSecretRaces bounds the retries when components fill the Secret at the same moment; one
// write wins and the others read it.
const maxSecretRaces = 5

// InternalToken returns the shared secret from the knactor-internal Secret of namespace. config/
// declares the Secret without a value; the first component to start fills it with 32 random
// bytes (an update conditional on the Secret's resourceVersion, so components that start
// together agree on one secret), and every component reads it from then on. A missing Secret is
// an error that says to apply config/.
func InternalToken(ctx context.Context, kube kubernetes.Interface, namespace string) (string, error) {
	secrets := kube.CoreV1().Secrets(namespace)
	for range maxSecretRaces {
		sec, err := secrets.Get(ctx, InternalSecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("Secret %s/%s not found: apply config/ (150-internal-secret.yaml declares it)", namespace, InternalSecretName)
		}
		if err != nil {
			return "", fmt.Errorf("read Secret %s/%s: %w", namespace, InternalSecretName, err)
		}
		if tok := sec.Data[InternalTokenKey]; len(tok) > 0 {
			if len(tok) < 32 {
				return "", fmt.Errorf("Secret %s/%s: key %q holds %d characters, fewer than 32", namespace, InternalSecretName, InternalTokenKey, len(tok))
			}
			return string(tok), nil
		}
		raw := make([]byte, internalTokenBytes)
		if _, err := rand.Read(raw); err != nil {
			return "", err
		}
		sec = sec.DeepCopy()
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[InternalTokenKey] = []byte(base64.RawURLEncoding.EncodeToString(raw))
		if sec.Type == "" {
			sec.Type = corev1.SecretTypeOpaque
		}
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // another component filled it first: read its value
		}
		if err != nil {
			return "", fmt.Errorf("fill Secret %s/%s: %w", namespace, InternalSecretName, err)
		}
		return string(sec.Data[InternalTokenKey]), nil
	}
	return "", fmt.Errorf("Secret %s/%s: gave up after %d conflicting updates", namespace, InternalSecretName, maxSecretRaces)
}
