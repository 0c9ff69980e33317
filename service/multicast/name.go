package multicast

// Name is the transport's name in logs and in where a peer was heard.
func (c *Conn) Name() string { return "multicast" }
