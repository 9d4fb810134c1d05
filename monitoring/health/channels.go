package health

import (
	"cmp"
	"slices"
)

// ChannelRow is one channel of the fleet's busiest: its subscribers (stream
// connections) and waiting polls summed over the instances that list it.
type ChannelRow struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
	Polls       int    `json:"polls"`
	// Instances is how many instances list the channel among their busiest.
	Instances int `json:"instances"`
	// Exact is false when an instance whose list is cut off (it has more channels than
	// it lists) does not list this one: it may hold up to that list's smallest count
	// more, so Subscribers+Polls is a lower bound.
	Exact bool `json:"exact"`
}

// ChannelsView is the fleet's busiest channels.
type ChannelsView struct {
	Rows []ChannelRow `json:"rows"`
	// Reporting counts the instances whose snapshot lists channels (an instance of an
	// older version lists none).
	Reporting int `json:"reporting"`
	// MaxTotal is the largest number of channels one instance has.
	MaxTotal int `json:"maxTotal"`
}

// TopChannels merges the busiest channels the live instances list in their snapshots
// (each instance lists its own top few) and returns the n largest, most subscribers
// first. Not part of Overview: channel names are for the admin console only.
func (a *Aggregator) TopChannels(n int) ChannelsView {
	now := a.opts.Now()
	a.mu.Lock()
	a.expireLocked(now)
	type list struct {
		names     map[string]bool
		truncated bool
	}
	var lists []list
	rows := map[string]*ChannelRow{}
	var v ChannelsView
	for _, in := range a.instances {
		top := in.cur.Channels
		if top == nil {
			continue
		}
		v.Reporting++
		v.MaxTotal = max(v.MaxTotal, top.Total)
		l := list{names: make(map[string]bool, len(top.Top)), truncated: top.Total > len(top.Top)}
		for _, c := range top.Top {
			l.names[c.Channel] = true
			r := rows[c.Channel]
			if r == nil {
				r = &ChannelRow{Channel: c.Channel, Exact: true}
				rows[c.Channel] = r
			}
			r.Subscribers += c.Subscribers
			r.Polls += c.Polls
			r.Instances++
		}
		lists = append(lists, l)
	}
	a.mu.Unlock()
	for _, r := range rows {
		for _, l := range lists {
			if l.truncated && !l.names[r.Channel] {
				r.Exact = false
				break
			}
		}
		v.Rows = append(v.Rows, *r)
	}
	slices.SortFunc(v.Rows, func(x, y ChannelRow) int {
		if d := cmp.Compare(y.Subscribers+y.Polls, x.Subscribers+x.Polls); d != 0 {
			return d
		}
		return cmp.Compare(x.Channel, y.Channel)
	})
	if n >= 0 && len(v.Rows) > n {
		v.Rows = v.Rows[:n]
	}
	return v
}
