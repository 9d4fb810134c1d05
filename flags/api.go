package flags

import (
	"context"
	"errors"
	"time"

	"encore.dev/beta/auth"
	"encore.dev/beta/errs"
	"encore.dev/rlog"

	"encore.app/flags/flag"
)

// UserFlags is every flag evaluated for the caller.
type UserFlags struct {
	Flags map[string]bool `json:"flags"`
}

// ForUser returns the flags evaluated for the authenticated user.
//
//encore:api auth method=GET path=/v2/flags
func ForUser(ctx context.Context) (*UserFlags, error) {
	uid, _ := auth.UserID()
	return &UserFlags{Flags: svc.store.Evaluator().EvaluateAll(string(uid))}, nil
}

// AdminParams carries the admin credential.
type AdminParams struct {
	Authorization string `header:"Authorization"`
}

// FlagInfo is one flag definition (see encore.app/flags/flag.Flag).
type FlagInfo struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Enabled     bool            `json:"enabled"`
	Rollout     int             `json:"rollout"`
	Overrides   map[string]bool `json:"overrides,omitempty"`
	Revision    uint64          `json:"revision"`
	UpdatedBy   string          `json:"updatedBy,omitempty"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// FlagList is every flag definition, sorted by name.
type FlagList struct {
	Flags []FlagInfo `json:"flags"`
}

// ListFlags lists flag definitions (admin).
//
//encore:api public method=GET path=/v2/flags/admin
func ListFlags(ctx context.Context, p *AdminParams) (*FlagList, error) {
	api, _, err := authorize(p.Authorization)
	if err != nil {
		return nil, err
	}
	fs := api.ListFlags()
	out := &FlagList{Flags: make([]FlagInfo, 0, len(fs))}
	for _, f := range fs {
		out.Flags = append(out.Flags, toInfo(f))
	}
	return out, nil
}

// ChangeParams is a partial change of one flag: absent fields keep their value.
type ChangeParams struct {
	Authorization   string          `header:"Authorization"`
	Enabled         *bool           `json:"enabled,omitempty"`
	Rollout         *int            `json:"rollout,omitempty"`
	Description     *string         `json:"description,omitempty"`
	SetOverrides    map[string]bool `json:"setOverrides,omitempty"`
	RemoveOverrides []string        `json:"removeOverrides,omitempty"`
	ClearOverrides  bool            `json:"clearOverrides,omitempty"`
	IfRevision      *uint64         `json:"ifRevision,omitempty"`
	Reason          string          `json:"reason,omitempty"`
}

// ChangeFlag changes one flag fleet-wide (admin).
//
//encore:api public method=PUT path=/v2/flags/admin/:name
func ChangeFlag(ctx context.Context, name string, p *ChangeParams) (*FlagInfo, error) {
	api, actor, err := authorize(p.Authorization)
	if err != nil {
		return nil, err
	}
	f, err := api.ChangeFlag(ctx, actor, name, flag.Change{
		Enabled:         p.Enabled,
		Rollout:         p.Rollout,
		Description:     p.Description,
		SetOverrides:    p.SetOverrides,
		RemoveOverrides: p.RemoveOverrides,
		ClearOverrides:  p.ClearOverrides,
		IfRevision:      p.IfRevision,
		Reason:          p.Reason,
	})
	if err != nil {
		return nil, toErr(err)
	}
	info := toInfo(f)
	return &info, nil
}

// AuditParams selects the newest entries (limit 1-1000, default 100).
type AuditParams struct {
	Authorization string `header:"Authorization"`
	Limit         int    `query:"limit"`
}

// AuditInfo is one recorded change.
type AuditInfo struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Flag   string    `json:"flag"`
	Reason string    `json:"reason,omitempty"`
	Before *FlagInfo `json:"before,omitempty"`
	After  FlagInfo  `json:"after"`
}

// AuditLog is the newest changes, newest first.
type AuditLog struct {
	Entries []AuditInfo `json:"entries"`
}

// Audit returns the newest flag changes (admin).
//
//encore:api public method=GET path=/v2/flags/audit
func Audit(ctx context.Context, p *AuditParams) (*AuditLog, error) {
	api, _, err := authorize(p.Authorization)
	if err != nil {
		return nil, err
	}
	entries, err := api.Audit(ctx, p.Limit)
	if err != nil {
		return nil, toErr(err)
	}
	out := &AuditLog{Entries: make([]AuditInfo, 0, len(entries))}
	for _, e := range entries {
		a := AuditInfo{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Flag: e.Flag, Reason: e.Reason, After: toInfo(e.After)}
		if e.Before != nil {
			b := toInfo(*e.Before)
			a.Before = &b
		}
		out.Entries = append(out.Entries, a)
	}
	return out, nil
}

func authorize(header string) (*flag.API, string, error) {
	if svc.api == nil {
		return nil, "", &errs.Error{Code: errs.Unauthenticated, Message: "no admin key configured (secret FlagsAdminKey)"}
	}
	actor, err := svc.api.Authorize(header)
	if err != nil {
		return nil, "", toErr(err)
	}
	return svc.api, actor, nil
}

func toInfo(f flag.Flag) FlagInfo {
	return FlagInfo{
		Name: f.Name, Description: f.Description, Enabled: f.Enabled, Rollout: f.Rollout,
		Overrides: f.Overrides, Revision: f.Revision, UpdatedBy: f.UpdatedBy, UpdatedAt: f.UpdatedAt,
	}
}

// toErr converts a flag package error to an Encore error; internal ones are logged.
func toErr(err error) error {
	_, code, msg := flag.StatusOf(err)
	var c errs.ErrCode
	switch code {
	case flag.CodeInvalid:
		c = errs.InvalidArgument
	case flag.CodeTooLarge:
		c = errs.ResourceExhausted
	case flag.CodeConflict:
		c = errs.Aborted
	case flag.CodeUnauthenticated:
		c = errs.Unauthenticated
	case flag.CodeUnavailable:
		c = errs.Unavailable
	default:
		rlog.Error("flags: request failed", "err", err)
		c = errs.Internal
	}
	if errors.Is(err, context.Canceled) {
		c, msg = errs.Canceled, "canceled"
	}
	return &errs.Error{Code: c, Message: msg}
}
