package rtclient

// Several instances: Config.URLs lists stream URLs of interchangeable instances (for
// deployments without a load balancer, and for tests). The first connection uses the
// first URL; every later attempt (after a dropped connection or a failed dial) moves
// on to the next one, round robin, so a client whose instance died reaches another one
// at its first retry and resumes there by cursor.

// urls is the list the client rotates through: Config.URLs, else Config.URL.
func (c *Client) urls() []string {
	if len(c.cfg.URLs) > 0 {
		return c.cfg.URLs
	}
	return []string{c.cfg.URL}
}

// nextURL returns the URL for the next connection attempt and advances the rotation.
// It runs on the client's goroutine only.
func (c *Client) nextURL() string {
	u := c.urls()
	s := u[c.attempts%len(u)]
	c.attempts++
	return s
}

// Instance is the name the server of the current (or last) connection gave in its
// welcome frame ("" before the first connection).
func (c *Client) Instance() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.instance
}

// lastURL is the URL of the last connection attempt (the first URL before any); the
// long-poll fallback polls the same instance. Run goroutine only.
func (c *Client) lastURL() string {
	u := c.urls()
	if c.attempts == 0 {
		return u[0]
	}
	return u[(c.attempts-1)%len(u)]
}
