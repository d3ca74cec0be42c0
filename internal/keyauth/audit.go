package keyauth

import (
	"context"
	"encoding/json"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

// detailsJSON encodes an audit event's details; nil gives nil.
func detailsJSON(m map[string]any) json.RawMessage {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return b
}

// auditNow writes an administrative event to the audit log at once (not
// batched: these are rare and must not be lost in a crash) and logs it.
// A failure to write is logged; the action itself has already happened.
func (s *Service) auditNow(ctx context.Context, by Actor, event string, k store.APIKey, outcome string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["owner"] = k.Owner
	ev := store.AuditEvent{At: s.now(), Actor: by.Name, Event: event, Target: k.ID, Outcome: outcome,
		SourceIP: by.IP, Details: detailsJSON(details)}
	s.log.Info("API key "+event[len("apikey."):], "key_id", k.ID, "owner", k.Owner, "actor", by.Name, "source_ip", by.IP)
	if err := s.st.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
		s.log.Error("audit: write event", "event", event, "key_id", k.ID, "err", err)
	}
}
