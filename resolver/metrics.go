package resolver

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// Metrics counts a resolver's lookups, as Angie's API counts those of a
// resolver's status_zone: set it in [Config.Metrics]. The metrics
// package's Collector gives one for each zone. Its methods are called
// concurrently and must return quickly.
type Metrics interface {
	// Lookup counts one question asked of the resolver, whether the cache
	// or the name servers answered it (Angie's "queries"), and how it
	// ended ("responses").
	Lookup(kind QueryKind, response Response)
	// Exchange observes how long the name servers took over a question
	// the cache could not answer, until an answer or a failure, retries
	// and the next servers included.
	Exchange(took time.Duration)
}

// QueryKind says what a question asks, in Angie's words.
type QueryKind string

// Kinds of questions: a client's name is asked by address (PTR), then
// confirmed by name (A or AAAA). Angie's third kind, "srv", is never asked
// here.
const (
	QueryName QueryKind = "name" // A or AAAA
	QueryAddr QueryKind = "addr" // PTR
)

// Response says how a question ended, in Angie's words.
type Response string

// Responses, as Angie's API counts them: the name server's response code
// (a name or record that does not exist is not_found), a timeout, or
// "other" for an answer that cannot be used.
const (
	ResponseSuccess       Response = "success"
	ResponseTimedOut      Response = "timedout"
	ResponseFormatError   Response = "format_error"
	ResponseServerFailure Response = "server_failure"
	ResponseNotFound      Response = "not_found"
	ResponseUnimplemented Response = "unimplemented"
	ResponseRefused       Response = "refused"
	ResponseOther         Response = "other"
)

// rcodeError is a name server's response code other than success or
// NXDOMAIN.
type rcodeError int

func (e rcodeError) Error() string {
	if name, ok := dns.RcodeToString[int(e)]; ok {
		return name
	}
	return "rcode " + strconv.Itoa(int(e))
}

// responseOf says how a lookup that returned err ended.
func responseOf(err error) Response {
	var rcode rcodeError
	var ne net.Error
	switch {
	case err == nil:
		return ResponseSuccess
	case errors.Is(err, ErrNotFound):
		return ResponseNotFound
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return ResponseTimedOut
	case !errors.As(err, &rcode):
		return ResponseOther
	}
	switch rcode {
	case dns.RcodeFormatError:
		return ResponseFormatError
	case dns.RcodeServerFailure:
		return ResponseServerFailure
	case dns.RcodeNotImplemented:
		return ResponseUnimplemented
	case dns.RcodeRefused:
		return ResponseRefused
	}
	return ResponseOther
}

// queryKind says what a question of type qtype asks.
func queryKind(qtype uint16) QueryKind {
	if qtype == dns.TypePTR {
		return QueryAddr
	}
	return QueryName
}
