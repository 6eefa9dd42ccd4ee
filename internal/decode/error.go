package decode

// Error is a decoding error at a path inside the document.
type Error struct {
	// Path locates the offending value, for example
	// `Services[0].Consumers[1].Peer`; it is empty for the document itself.
	Path string
	// Msg says what is wrong and, where it can, how to fix it.
	Msg string
}

// Error returns "<Path>: <Msg>", or just Msg when Path is empty.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func errorf(path, msg string) *Error { return &Error{Path: path, Msg: msg} }
