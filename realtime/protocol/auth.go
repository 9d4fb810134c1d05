package protocol

// AuthOK answers an accepted "auth" frame (token refresh): the connection now runs on
// the new token, which expires at ExpiresAt (unix ms; 0 = no expiry). A refused one is
// answered with an error frame (bad_token or forbidden) and changes nothing.
type AuthOK struct {
	Type      string `json:"type"` // TypeAuth
	ID        string `json:"id,omitempty"`
	ExpiresAt int64  `json:"expiresAt,omitempty"`
}
