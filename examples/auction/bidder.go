package main

import (
	"context"
	"net/http"

	"github.com/knactor/knactor/sdk"
)

// Bidder is the state of one bidder: the results of the auctions it bid in.
type Bidder struct {
	Bids    int               `json:"bids"`
	Results map[string]Result `json:"results,omitempty"`
	// Heard counts the results received: one per auction, however often one is delivered.
	Heard int `json:"heard"`
	// Best is the best bid of each auction the bidder follows, as last announced.
	Best map[string]int64 `json:"best,omitempty"`
}

// BidderBid is the payload of a bidder's "bid".
type BidderBid struct {
	Auction string `json:"auction"`
	Amount  int64  `json:"amount"`
}

func newBidder() *sdk.Actor[Bidder] {
	a := sdk.NewActor[Bidder]()
	sdk.Handle(a, "bid", bidderBid)
	sdk.Handle(a, "result", bidderResult)
	sdk.Handle(a, "announce", func(_ context.Context, t *sdk.Turn[Bidder], an Announcement) (struct{}, error) {
		if t.State.Best == nil {
			t.State.Best = map[string]int64{}
		}
		t.State.Best[an.Auction] = an.HighBid
		return struct{}{}, nil
	})
	sdk.Handle(a, "status", func(_ context.Context, t *sdk.Turn[Bidder], _ struct{}) (Bidder, error) {
		return t.State, nil
	})
	return a
}

// bidderBid subscribes the bidder to the auction's results and pipes the bid on to the auction:
// the auction's answer (the auction, or why the bid was refused) is the caller's.
func bidderBid(_ context.Context, t *sdk.Turn[Bidder], p BidderBid) (BidPayload, error) {
	if p.Auction == "" || p.Amount <= 0 {
		return BidPayload{}, sdk.Errorf(http.StatusBadRequest, "bad_payload", "a bid needs an auction and a positive amount")
	}
	t.State.Bids++
	t.Subscribe(channelOf(p.Auction))
	t.Pipe(sdk.Target{Function: "auction", Actor: p.Auction, Action: "bid"})
	return BidPayload{Bidder: t.Actor, Amount: p.Amount}, nil
}

// bidderResult records an auction's result, broadcast when it closed, and leaves its channel.
func bidderResult(_ context.Context, t *sdk.Turn[Bidder], r Result) (struct{}, error) {
	if t.State.Results == nil {
		t.State.Results = map[string]Result{}
	}
	t.State.Results[r.Auction] = r
	t.State.Heard++
	t.Unsubscribe(channelOf(r.Auction))
	return struct{}{}, nil
}
