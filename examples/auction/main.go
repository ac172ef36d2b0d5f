// Command auction is an auction per actor id, closed by a durable timer, and its bidders.
//
// Run without arguments it serves the auction function. Action "open" with
// {"item": "...", "duration_ms": N} (or "closes_at": RFC 3339) opens the auction and sets its
// "close" timer; with "announce_every_ms": M it also sets the repeating timer "announce", which
// broadcasts the best bid so far to the auction's channel every M ms until it closes; "bid" with {"bidder": "...", "amount": N} takes a bid higher than the best so far
// while the auction is open; "status" replies the auction. When the timer fires, "close" closes
// the auction, names the winner, and broadcasts the result to the channel "auction.{id}". The
// timer lives in the router's store with the auction's state, so an auction closes on time
// through router restarts, crashes and scale to zero, and closes exactly once.
//
// Run as "auction bidder" it serves the bidder function: a bidder actor's "bid" with
// {"auction": id, "amount": N} subscribes the bidder to the auction's channel and pipes the bid
// to the auction (whose answer is the caller's); "result" is what the auction's broadcast runs on
// every bidder, and "status" replies what the bidder won and lost.
//
// Run as "auction watch CHANNEL" it is a WebSocket watcher: it prints every broadcast to the
// channel (GET /v1/channels/CHANNEL/ws on $KNACTOR_URL, default http://127.0.0.1:8080, with
// $KNACTOR_TOKEN as bearer token when set) until interrupted.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/knactor/knactor/sdk"
)

// State is one auction.
type State struct {
	Item       string    `json:"item,omitempty"`
	Open       bool      `json:"open"`
	ClosesAt   time.Time `json:"closes_at,omitzero"`
	HighBid    int64     `json:"high_bid,omitempty"`
	HighBidder string    `json:"high_bidder,omitempty"`
	Bids       int       `json:"bids"`
	Winner     string    `json:"winner,omitempty"`
	// Closings counts the times "close" ran: exactly one for a closed auction.
	Closings int `json:"closings,omitempty"`
	// Announcements counts the firings of the "announce" timer.
	Announcements int `json:"announcements,omitempty"`
}

// Announcement is what the "announce" timer broadcasts: the best bid so far.
type Announcement struct {
	Auction string `json:"auction"`
	HighBid int64  `json:"high_bid"`
	Bidder  string `json:"high_bidder"`
	Number  int    `json:"number"`
}

// OpenPayload opens an auction that closes after DurationMS, or at ClosesAt.
type OpenPayload struct {
	Item       string    `json:"item"`
	DurationMS int64     `json:"duration_ms"`
	ClosesAt   time.Time `json:"closes_at"`
	// AnnounceEveryMS, when set, announces the best bid to the channel this often.
	AnnounceEveryMS int64 `json:"announce_every_ms"`
}

// BidPayload is a bid.
type BidPayload struct {
	Bidder string `json:"bidder"`
	Amount int64  `json:"amount"`
}

// closeTimer names the timer that closes an auction; announceTimer the one that announces its
// best bid.
const (
	closeTimer    = "close"
	announceTimer = "announce"
)

func main() {
	switch {
	case len(os.Args) > 1 && os.Args[1] == "bidder":
		sdk.Main(newBidder())
		return
	case len(os.Args) > 2 && os.Args[1] == "watch":
		if err := watch(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "auction watch:", err)
			os.Exit(1)
		}
		return
	}
	sdk.Main(newActor())
}

// channelOf is the channel of an auction's bidders.
func channelOf(auction string) string { return "auction." + auction }

// Result is what an auction broadcasts to its bidders when it closes.
type Result struct {
	Auction string `json:"auction"`
	Item    string `json:"item"`
	Winner  string `json:"winner"`
	Amount  int64  `json:"amount"`
}

func newActor() *sdk.Actor[State] {
	a := sdk.NewActor[State]()
	sdk.Handle(a, "open", open)
	sdk.Handle(a, "bid", bid)
	sdk.Handle(a, "close", closeAuction)
	sdk.Handle(a, "announce", announce)
	sdk.Handle(a, "status", func(_ context.Context, t *sdk.Turn[State], _ struct{}) (State, error) {
		return t.State, nil
	})
	return a
}

// open opens the auction and sets the timer that closes it.
func open(_ context.Context, t *sdk.Turn[State], p OpenPayload) (State, error) {
	switch {
	case t.State.Open || t.State.Closings > 0:
		return State{}, sdk.Errorf(http.StatusConflict, "already_opened", "auction %q was opened already", t.Actor)
	case p.Item == "":
		return State{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "an auction needs an item")
	case p.ClosesAt.IsZero() && (p.DurationMS <= 0 || time.Duration(p.DurationMS)*time.Millisecond > sdk.MaxTimerDelay):
		return State{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "give closes_at, or duration_ms between 1 and %d", sdk.MaxTimerDelay.Milliseconds())
	}
	// A turn is deterministic: the function never reads the clock. With a duration the router's
	// clock sets the due time, and the envelope's timers show it to later turns.
	timer := sdk.Timer{Name: closeTimer, Action: "close", In: time.Duration(p.DurationMS) * time.Millisecond}
	if !p.ClosesAt.IsZero() {
		timer.In, timer.At = 0, p.ClosesAt
	}
	t.SetTimer(timer)
	if p.AnnounceEveryMS != 0 {
		every := time.Duration(p.AnnounceEveryMS) * time.Millisecond
		if every < sdk.MinTimerInterval || every > sdk.MaxTimerDelay {
			return State{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "announce_every_ms must be %d to %d", sdk.MinTimerInterval.Milliseconds(), sdk.MaxTimerDelay.Milliseconds())
		}
		t.SetTimer(sdk.Timer{Name: announceTimer, Action: "announce", Every: every})
	}
	t.State = State{Item: p.Item, Open: true, ClosesAt: p.ClosesAt.UTC()}
	return t.State, nil
}

// bid takes a bid above the best so far.
func bid(_ context.Context, t *sdk.Turn[State], p BidPayload) (State, error) {
	switch {
	case !t.State.Open:
		return State{}, sdk.Errorf(http.StatusConflict, "not_open", "auction %q is not open", t.Actor)
	case p.Bidder == "" || p.Amount <= 0:
		return State{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "a bid needs a bidder and a positive amount")
	case p.Amount <= t.State.HighBid:
		return State{}, sdk.Errorf(http.StatusConflict, "bid_too_low", "the best bid is %d", t.State.HighBid)
	}
	t.State.HighBid, t.State.HighBidder = p.Amount, p.Bidder
	t.State.Bids++
	return t.State, nil
}

// closeAuction is the close timer's action: the auction closes, the best bidder wins.
func closeAuction(_ context.Context, t *sdk.Turn[State], _ struct{}) (State, error) {
	if name, _, ok := t.FiredTimer(); !ok || name != closeTimer {
		return State{}, sdk.Errorf(http.StatusForbidden, "timer_only", "an auction closes on its timer")
	}
	t.State.Open = false
	t.State.Winner = t.State.HighBidder
	t.State.Closings++
	t.CancelTimer(announceTimer)
	t.Broadcast(sdk.Broadcast{Channel: channelOf(t.Actor), Action: "result",
		Payload: Result{Auction: t.Actor, Item: t.State.Item, Winner: t.State.Winner, Amount: t.State.HighBid}})
	return t.State, nil
}

// announce is the announce timer's action: it broadcasts the best bid so far.
func announce(_ context.Context, t *sdk.Turn[State], _ struct{}) (State, error) {
	if name, _, ok := t.FiredTimer(); !ok || name != announceTimer {
		return State{}, sdk.Errorf(http.StatusForbidden, "timer_only", "an auction announces on its timer")
	}
	t.State.Announcements++
	t.Broadcast(sdk.Broadcast{Channel: channelOf(t.Actor), Action: "announce", Payload: Announcement{
		Auction: t.Actor, HighBid: t.State.HighBid, Bidder: t.State.HighBidder, Number: t.State.Announcements}})
	return t.State, nil
}
