package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/knactor/knactor/test/conformance"
)

func TestAuctionConformance(t *testing.T) {
	srv := httptest.NewServer(newActor())
	defer srv.Close()
	conformance.Run(t, srv.URL, conformance.Options{
		Function: "auction",
		State:    json.RawMessage(`{"item":"vase","open":true,"high_bid":5,"high_bidder":"bo","bids":1}`),
		Actions: []conformance.Action{{
			Name:            "open",
			Payload:         json.RawMessage(`{"item":"vase","duration_ms":60000}`),
			RefusesExisting: "already_opened",
			Expect: func(a *conformance.Answer) error {
				if len(a.Timers) != 1 || a.Timers[0].Name != "close" || a.Timers[0].Action != "close" || a.Timers[0].InMS == nil || *a.Timers[0].InMS != 60000 {
					return fmt.Errorf("want the close timer in 60 s, got %+v", a.Timers)
				}
				return nil
			},
		}, {
			Name:       "bid",
			Payload:    json.RawMessage(`{"bidder":"ann","amount":10}`),
			RefusesNew: "not_open",
		}, {
			Name: "status",
		}},
	})
}

func TestBidderConformance(t *testing.T) {
	srv := httptest.NewServer(newBidder())
	defer srv.Close()
	conformance.Run(t, srv.URL, conformance.Options{
		Function: "bidder",
		State:    json.RawMessage(`{"bids":1,"heard":0}`),
		Actions: []conformance.Action{{
			Name:    "bid",
			Payload: json.RawMessage(`{"auction":"lot","amount":10}`),
			Expect: func(a *conformance.Answer) error {
				if a.Pipe == nil || a.Pipe.Function != "auction" || a.Pipe.Actor != "lot" || a.Pipe.Action != "bid" ||
					len(a.Subscribe) != 1 || a.Subscribe[0] != "auction.lot" {
					return fmt.Errorf("want a pipe to auction/lot bid and a subscription to auction.lot, got %s", a.Body)
				}
				return nil
			},
		}, {
			Name:    "result",
			Payload: json.RawMessage(`{"auction":"lot","item":"vase","winner":"ann","amount":10}`),
		}, {
			Name: "status",
		}},
	})
}

// The close timer's turn closes the auction, names the winner and broadcasts the result; any
// other caller of "close" is refused.
func TestCloseBroadcastsTheResult(t *testing.T) {
	srv := httptest.NewServer(newActor())
	defer srv.Close()
	tests := []struct {
		name, envelope string
		status         int
		want           string
	}{{
		name: "the timer closes it",
		envelope: `{"contract":2,"function":"auction","actor":"lot","action":"close","version":"v1",
			"state":{"item":"vase","open":true,"high_bid":10,"high_bidder":"ann","bids":1},
			"metadata":{"timer":"close","timer_due":"2026-12-04T12:00:00Z"}}`,
		status: 200,
		want: `{"state":{"item":"vase","open":false,"high_bid":10,"high_bidder":"ann","bids":1,"winner":"ann","closings":1},` +
			`"reply":{"item":"vase","open":false,"high_bid":10,"high_bidder":"ann","bids":1,"winner":"ann","closings":1},` +
			`"timers":[{"name":"announce","cancel":true}],` +
			`"broadcast":[{"channel":"auction.lot","action":"result","payload":{"auction":"lot","item":"vase","winner":"ann","amount":10}}]}`,
	}, {
		name:     "a caller cannot close it",
		envelope: `{"function":"auction","actor":"lot","action":"close","version":"v1","state":{"item":"vase","open":true}}`,
		status:   403,
		want:     `{"error":{"status":403,"code":"timer_only","message":"an auction closes on its timer"}}`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/v1/invoke", "application/json", bytes.NewBufferString(tc.envelope))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.want {
				t.Fatalf("got %d %s\nwant %d %s", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}
