package present

// ArgKind says whether a command takes an argument. The control socket's
// command table and diskctl's share it, so the two describe their commands
// the same way; each checks the arguments it was given itself.
type ArgKind int

// The kinds of argument a command takes.
const (
	ArgNone     ArgKind = iota // no argument
	ArgOptional                // an argument may follow
	ArgRequired                // an argument must follow
)
