// Package tcpdial opens TCP connections that notice a dead peer within a
// bounded time, instead of the hours the operating system's defaults allow.
//
// Two mechanisms cover the two ways a connection goes quiet:
//
//   - TCP keepalives probe a connection on which nothing is being sent,
//     such as a query waiting for a silent server: the peer's kernel must
//     acknowledge them, so a vanished host, a dropped NAT mapping or a
//     partition ends the connection after Idle + Count*Interval.
//   - TCP_USER_TIMEOUT (Linux) bounds how long sent data may stay
//     unacknowledged, which keepalives do not cover: a write into a
//     blackholed connection otherwise retransmits for about 15 minutes.
//
// A peer that is alive but paused (its kernel still acknowledges) is not
// detected here; the replication stream's own liveness deadline does that.
package tcpdial

import (
	"net"
	"time"
)

// Dialer returns a dialer whose connections are declared dead after about
// timeout without their peer acknowledging anything: keepalives start after
// timeout/3 of silence and probe three times timeout/9 apart, and
// unacknowledged data is given up on after timeout.
func Dialer(timeout time.Duration) *net.Dialer {
	idle := max(timeout/3, time.Second)
	interval := max(timeout/9, time.Second)
	return &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: idle, Interval: interval, Count: 3},
		Control:         userTimeout(timeout),
	}
}
