package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const auditPath = Path + "/audit"

// registerAudit adds the audit-log page: newest first, filtered by actor,
// event and a time range, paged by event ID.
func (c *Console) registerAudit(mux *http.ServeMux) {
	c.Handle(mux, "GET "+auditPath, c.audit)
}

// auditTimeLayout is the form of the from/to fields: what an
// <input type="datetime-local"> sends, read as UTC.
const auditTimeLayout = "2006-01-02T15:04"

// auditFilter is the parsed query of the audit page.
type auditFilter struct {
	Actor, Event string
	From, To     string // as typed (auditTimeLayout), for the form
	Before       int64
}

// auditData fills console_audit.html.
type auditData struct {
	Filter    auditFilter
	Events    []store.AuditEvent
	NextURL   string
	FirstURL  string
	Filtering bool
}

// readAuditFilter reads and checks the page's query. Unreadable times are
// reported in msg and ignored.
func readAuditFilter(r *http.Request) (f auditFilter, q store.AuditQuery, msg string) {
	v := r.URL.Query()
	cut := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) > maxQueryLen {
			s = s[:maxQueryLen]
		}
		return strings.ToValidUTF8(s, "")
	}
	f = auditFilter{Actor: cut(v.Get("actor")), Event: cut(v.Get("event"))}
	q = store.AuditQuery{Actor: f.Actor, Event: f.Event, Limit: PageSize + 1}
	for _, tf := range []struct {
		name string
		raw  *string
		t    *time.Time
	}{{"from", &f.From, &q.From}, {"to", &f.To, &q.To}} {
		s := cut(v.Get(tf.name))
		if s == "" {
			continue
		}
		t, err := time.Parse(auditTimeLayout, s)
		if err != nil {
			msg = "Give times as YYYY-MM-DDTHH:MM (UTC). The unreadable one was ignored."
			continue
		}
		*tf.raw, *tf.t = s, t
	}
	if b, err := strconv.ParseInt(v.Get("before"), 10, 64); err == nil && b > 0 {
		f.Before, q.Before = b, b
	}
	return f, q, msg
}

// url is the page's address with f's filters and the given cursor.
func (f auditFilter) url(before int64) string {
	v := url.Values{}
	for k, s := range map[string]string{"actor": f.Actor, "event": f.Event, "from": f.From, "to": f.To} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if before > 0 {
		v.Set("before", strconv.FormatInt(before, 10))
	}
	if len(v) == 0 {
		return auditPath
	}
	return auditPath + "?" + v.Encode()
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, op Operator) {
	f, q, msg := readAuditFilter(r)
	evs, err := c.st.AuditLog(r.Context(), q)
	if err != nil {
		c.Fail(w, r, op, "audit log", err)
		return
	}
	data := auditData{Filter: f, Filtering: f.Actor != "" || f.Event != "" || f.From != "" || f.To != ""}
	if len(evs) > PageSize {
		evs = evs[:PageSize]
		data.NextURL = f.url(evs[len(evs)-1].ID)
	}
	if f.Before > 0 {
		data.FirstURL = f.url(0)
	}
	data.Events = evs
	c.Render(w, r, http.StatusOK, "audit", op, Page{Title: "Audit log", Section: "audit", Error: msg, Data: data})
}
