// Package present renders diskd's records for people and scripts: the
// escaping of untrusted strings for terminals (Escape), the aligned tables
// of disks and peers, the status lines, and the --json documents of disks,
// peers and status. The control socket and diskctl both print through it, so
// the two show the same thing in the same way.
//
// Disk tables and disk JSON walk diskstate's field table: a new disk
// attribute shows up in --json at once, and in tables as soon as its field
// names a column.
//
// It also holds ArgKind, the shape of a command's argument that the
// control socket and diskctl both describe their commands with.
//
// It is not a protocol and holds no state: it turns values into bytes.
// Every string that came from the network or from a disk goes through
// Escape before it reaches a table or a status line; JSON carries strings
// with encoding/json's escaping (invalid UTF-8 becomes U+FFFD there).
package present
