package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/knactor/knactor/test/proctest"
)

func routerPod(name, ip string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "knactor-system", Labels: map[string]string{"app": "router"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "router", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func TestPeersOwner(t *testing.T) {
	client := fake.NewClientset(routerPod("r-a", "10.0.0.1", true), routerPod("r-b", "10.0.0.2", true),
		routerPod("r-c", "10.0.0.3", false))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := NewPeers(client, "knactor-system", "app=router", "r-a", 0, nil)
	b := NewPeers(client, "knactor-system", "app=router", "r-b", 0, nil)
	for _, p := range []*Peers{a, b} {
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		select { // the first list changes the routers from none (the informer may hand it to
		// the handlers only after Start returns)
		case <-p.Changed():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no change told after the first list", p.self)
		}
		proctest.Eventually(t, p.self+" lists the other router", func() bool { return len(p.Others()) == 1 })
	}
	// Every key has exactly one owner, the same on both routers; the not-ready pod owns none.
	owned := map[string]int{}
	for i := range 200 {
		key := "counter/" + string(rune('a'+i%26)) + string(rune('0'+i/26))
		addrA, remoteA := a.Owner(key)
		addrB, remoteB := b.Owner(key)
		switch {
		case !remoteA && remoteB && addrB == "10.0.0.1:8080":
			owned["r-a"]++
		case remoteA && !remoteB && addrA == "10.0.0.2:8080":
			owned["r-b"]++
		default:
			t.Fatalf("key %s: a says (%q, %v), b says (%q, %v): the routers disagree", key, addrA, remoteA, addrB, remoteB)
		}
	}
	if owned["r-a"] == 0 || owned["r-b"] == 0 {
		t.Errorf("keys per router %v: want both to own some", owned)
	}
	// Each lists the other ready router, not itself, not the pod that is not ready.
	if got := a.Others(); len(got) != 1 || got[0] != "10.0.0.2:8080" {
		t.Errorf("r-a's others = %v, want [10.0.0.2:8080]", got)
	}
	if got := b.Others(); len(got) != 1 || got[0] != "10.0.0.1:8080" {
		t.Errorf("r-b's others = %v, want [10.0.0.1:8080]", got)
	}

	// r-b is being deleted: from then on r-a owns everything.
	del := routerPod("r-b", "10.0.0.2", true)
	now := metav1.Now()
	del.DeletionTimestamp = &now
	if _, err := client.CoreV1().Pods("knactor-system").Update(ctx, del, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, remote := a.Owner("counter/x")
		_, remote2 := a.Owner("counter/y")
		if !remote && !remote2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a router being deleted still owns actors")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ... and r-a was told that its routers changed (routing.PeerWatcher).
	select {
	case <-a.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("r-a was not told that r-b left")
	}
}
