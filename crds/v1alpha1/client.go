package v1alpha1

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
)

// Get reads the ActorSystem namespace/name. Errors of the API are returned as they are (they name
// the resource and object), so apierrors.IsNotFound and friends work on them.
func Get(ctx context.Context, client dynamic.Interface, namespace, name string) (*ActorSystem, error) {
	u, err := client.Resource(Resource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return FromUnstructured(u)
}

// List reads the ActorSystems of namespace (every namespace when it is ""), ordered by namespace
// and name. Errors of the API are returned as they are.
func List(ctx context.Context, client dynamic.Interface, namespace string) ([]ActorSystem, error) {
	l, err := client.Resource(Resource).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]ActorSystem, 0, len(l.Items))
	for i := range l.Items {
		as, err := FromUnstructured(&l.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *as)
	}
	slices.SortFunc(out, func(a, b ActorSystem) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// UpdateStatus writes as.Status through the status subresource (the API server ignores any
// change to the spec there) and returns the object as stored. as must carry the resourceVersion
// it was read with: if the object changed since, the API answers Conflict
// (apierrors.IsConflict), and the caller reads it again and recomputes the status.
func UpdateStatus(ctx context.Context, client dynamic.Interface, as *ActorSystem) (*ActorSystem, error) {
	u, err := ToUnstructured(as)
	if err != nil {
		return nil, err
	}
	u, err = client.Resource(Resource).Namespace(as.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return FromUnstructured(u)
}

// FromUnstructured converts an object of the dynamic client into an ActorSystem. An object of
// another kind is an error; one without apiVersion and kind is taken as an ActorSystem.
func FromUnstructured(u *unstructured.Unstructured) (*ActorSystem, error) {
	if gvk := u.GroupVersionKind(); !gvk.Empty() && gvk != SchemeGroupVersion.WithKind(Kind) {
		return nil, fmt.Errorf("%s %s/%s is not a %s", gvk, u.GetNamespace(), u.GetName(), SchemeGroupVersion.WithKind(Kind))
	}
	as := &ActorSystem{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, as); err != nil {
		return nil, fmt.Errorf("decode ActorSystem %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	as.APIVersion, as.Kind = SchemeGroupVersion.String(), Kind
	return as, nil
}

// ToUnstructured converts an ActorSystem into an object for the dynamic client, with apiVersion
// and kind set whether or not as.TypeMeta has them.
func ToUnstructured(as *ActorSystem) (*unstructured.Unstructured, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(as)
	if err != nil {
		return nil, fmt.Errorf("encode ActorSystem %s/%s: %w", as.Namespace, as.Name, err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(SchemeGroupVersion.WithKind(Kind))
	return u, nil
}
