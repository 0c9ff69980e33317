// Package control is diskd's Unix control socket: the server side (a line
// protocol over a listener that comes from systemd socket activation when
// present, answered from one table of commands and their handlers) and the
// client side (a connection that sends one line and reads the response).
//
// It is not the owner of any state: it reads the inventory and calls the
// actions (refresh, announce, ping, status) that the daemon gives it. It
// does not format: tables, JSON and escaping come from service/present,
// which diskctl shares. The interactive readline client that `diskd`
// without -d runs lives with cmd/diskd.
//
// # Protocol
//
// Line based, UTF-8, usable with `socat - UNIX-CONNECT:PATH`. A client sends
// one request line; the server answers with zero or more lines and then a
// final line that is either `OK` or `ERR <message>`. Requests may be
// pipelined; answers come in order. The details:
//
//   - A line ends with "\n"; one trailing "\r" is stripped (telnet, socat
//     crlf). A final line without "\n" before the client half-closes is
//     still answered.
//   - Empty and whitespace-only lines are ignored: no answer at all, as in a
//     shell. Client.Do does not send them.
//   - A request line longer than MaxLineBytes (not counting its line end) is
//     answered with `ERR request line too long ...` and the connection is
//     closed, since the rest of the line cannot be told from the next
//     request. A line that is not valid UTF-8 gets `ERR request is not valid
//     UTF-8` and the connection stays usable.
//   - The command word is case-insensitive. Options (`--json`) come after
//     the command word; `--` ends the options. As a convenience a single
//     `--json` at the very end of the line is accepted too (`list foo
//     --json`), unless `--` was used.
//   - The argument of `list PATTERN` and `find TERM` is the rest of the line
//     with surrounding blanks removed, so labels with spaces need no quoting
//     (`find My Passport`). There is no quoting.
//   - Unknown commands get `ERR unknown command "x"` (escaped), followed by
//     `; did you mean "list"?` when a command is close (an edit or two
//     away, or the start of one command's name), and wrong arguments `ERR
//     usage: ...`; the connection stays usable either way.
//   - `help COMMAND` answers with two lines, `usage: ...` and what the
//     command does.
//   - `quit` is answered with `OK`, then the server closes the connection.
//   - A query that selects nothing (list, find, peers) answers with no lines
//     and `OK`, in human and --json form alike (`[]` for --json): ERR means
//     the request failed, not that the answer is empty.
//   - Human tables (list, find, peers) have a header line and columns
//     separated by two spaces, aligned by rune count; with no rows there is
//     no header either. Every string that came from the network or from
//     disks goes through Escape, and every ERR message too, so no response
//     line can contain a raw control character or a line break.
//   - No line of an answer can be taken for its end: a table line that would
//     read "OK" or start with "ERR " (a peer named "ERR") gets its first
//     letter escaped, `\x45RR`.
//   - --json answers are one JSON document on one line (encoding/json
//     escapes control characters; HTML escaping is off). JSON cannot carry
//     invalid UTF-8: such bytes become U+FFFD there, while human output
//     shows them as \xNN.
//   - Each write of an answer has a deadline (Server.WriteTimeout, 10s by
//     default): a client that stops reading is disconnected instead of
//     pinning a goroutine.
//   - status prints "key: value" lines (version, host, host id, started,
//     peers, disks, last scan as RFC 3339 and how long ago or "never", scan
//     error or "none", packets in/out/dropped, drops by reason as
//     "reason=N ..." or "none", then the daemon's extra lines).
//   - refresh, announce and ping run with a deadline (Server.ActionTimeout,
//     2 minutes by default) and are cancelled when the server stops.
//
// # Limits
//
// Any member of the socket's group may be hostile, so no one user can keep
// the others out:
//
//   - A connection that sends no request for Server.IdleTimeout (60s by
//     default) is closed, silently: an unasked ERR line would be read as
//     the answer to the client's next request. Clients that stay open
//     reconnect when they find the connection closed (the interactive
//     client does).
//   - A request line must be complete (its "\n" received) within
//     Server.RequestTimeout (5s by default) of its first byte, else the
//     server answers `ERR request line not complete within 5s; closing
//     connection` and closes the connection: a client that trickles bytes
//     cannot hold a slot.
//   - At most Server.MaxConns connections (64 by default) are served at
//     once, of which an eighth (at least one) is kept for root. Every other
//     user may hold at most Server.MaxConnsPerUser (16 by default); the
//     user is the one that connected (SO_PEERCRED). Root is exempt from
//     the per-user cap.
//   - When a limit is reached, the connection that has been idle longest
//     (at least Server.EvictAfter, 5s by default) among those that count
//     against it is closed to make room, preferring the user that holds
//     the most. When none is idle that long, the new connection gets `ERR
//     too many connections` (or `ERR too many connections from uid N (at
//     most M)` for the per-user cap) and is closed.
//   - So a `list` from a user who holds no connections is always answered,
//     whatever one other user does: a user can only lock out themselves
//     (root is trusted and has no per-user cap).
package control
