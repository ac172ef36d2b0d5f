package routing

// Peers tells a router which router owns an actor when several routers serve one actor system
// (Kubernetes mode). Each actor's turns run on its owner, so one call per actor runs at a time
// across all routers and the owner's cache stays warm; the others forward the actor's calls to
// it. Implementations choose owners by rendezvous hashing over the ready routers, so every router
// agrees while they see the same routers.
type Peers interface {
	// Owner returns the address (host:port) of the router that owns key and true, or false when
	// this router owns it (or knows no peer).
	Owner(key string) (addr string, remote bool)
}

// PeerLister is a Peers that also lists the other routers, so a broadcast's WebSocket push
// reaches the channel's clients whichever router they are connected to. pods/kube.Peers
// implements it.
type PeerLister interface {
	// Others returns the addresses (host:port) of the other ready routers.
	Others() []string
}

// PeerWatcher is a PeerLister that says when the routers it lists change, so that a router links
// to one that just became ready at once rather than at its next look (router: the relay links of
// WebSocket subscriptions). pods/kube.Peers implements it.
type PeerWatcher interface {
	PeerLister
	// Changed returns the channel that receives a value after the routers changed: one value
	// for any number of changes since it was last read. It has one reader.
	Changed() <-chan struct{}
}
