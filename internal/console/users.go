package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/oauth"
	"github.com/gatehouse-dev/gatehouse/internal/store"
)

const usersPath = Path + "/users"

// registerUsers adds the users pages: list and search, create, and a
// user's page (reset password, disable or enable, delete, their sessions
// and consents).
func (c *Console) registerUsers(mux *http.ServeMux) {
	c.Handle(mux, "GET "+usersPath, c.userList)
	c.Handle(mux, "GET "+usersPath+"/new", c.userNew)
	c.Handle(mux, "POST "+usersPath, c.userCreate)
	c.Handle(mux, "GET "+usersPath+"/{id}", c.userShow)
	c.Handle(mux, "POST "+usersPath+"/{id}/password", c.userPassword)
	c.Handle(mux, "POST "+usersPath+"/{id}/disable", c.userDisable)
	c.Handle(mux, "POST "+usersPath+"/{id}/enable", c.userEnable)
	c.Handle(mux, "POST "+usersPath+"/{id}/delete", c.userDelete)
	c.Handle(mux, "POST "+usersPath+"/{id}/sessions/{handle}/delete", c.userEndSession)
	c.Handle(mux, "POST "+usersPath+"/{id}/sessions/delete", c.userEndSessions)
	c.Handle(mux, "POST "+usersPath+"/{id}/consents/{client}/revoke", c.userRevokeConsent)
}

// userListData fills console_users.html.
type userListData struct {
	Users     []store.User
	Cursor    Cursor
	NextURL   string
	FirstURL  string
	Searching bool
}

func (c *Console) userList(w http.ResponseWriter, r *http.Request, op Operator) {
	cur := ReadCursor(r)
	us, err := c.st.SearchUsers(r.Context(), cur.Q, cur.After, PageSize+1)
	if err != nil {
		c.Fail(w, r, op, "list users", err)
		return
	}
	if len(us) > PageSize {
		us = us[:PageSize]
		cur.Next = us[len(us)-1].Username
	}
	c.Render(w, r, http.StatusOK, "users", op, Page{Title: "Users", Section: "users",
		Data: userListData{Users: us, Cursor: cur, NextURL: cur.NextURL(usersPath),
			FirstURL: cur.FirstURL(usersPath), Searching: cur.Q != ""}})
}

// userFormData fills console_user_new.html.
type userFormData struct {
	Username, Email, Name string
	Admin                 bool
	Errors                map[string]string
}

func (c *Console) userNew(w http.ResponseWriter, r *http.Request, op Operator) {
	c.Render(w, r, http.StatusOK, "user_new", op, Page{Title: "New user", Section: "users", Data: userFormData{}})
}

// userFieldOf maps oauth's user-settings message to its form field.
func userFieldOf(msg string) string {
	for _, m := range []struct{ prefix, field string }{
		{"the username", "username"}, {"the display name", "name"}, {"the email", "email"}, {"the password", "password"},
	} {
		if strings.HasPrefix(msg, m.prefix) {
			return m.field
		}
	}
	return ""
}

// invalidUser turns a refused user into a field error.
func invalidUser(err error) map[string]string {
	_, msg, ok := strings.Cut(err.Error(), oauth.ErrInvalidUser.Error()+": ")
	if !ok || msg == "" {
		msg = "the settings are not valid"
	}
	return map[string]string{userFieldOf(msg): strings.ToUpper(msg[:1]) + msg[1:] + "."}
}

func (c *Console) userCreate(w http.ResponseWriter, r *http.Request, op Operator) {
	f := r.PostForm
	data := userFormData{Username: f.Get("username"), Email: strings.TrimSpace(f.Get("email")),
		Name: strings.TrimSpace(f.Get("name")), Admin: f.Get("admin") == "on"}
	refuse := func(status int, errs map[string]string) {
		data.Errors = errs
		msg := "The user was not created: correct the fields marked below."
		if m, ok := errs[""]; ok {
			msg = "The user was not created. " + m
		}
		c.Render(w, r, status, "user_new", op, Page{Title: "New user", Section: "users", Error: msg, Data: data})
	}
	if f.Get("password") != f.Get("password2") {
		refuse(http.StatusBadRequest, map[string]string{"password2": "The passwords do not match."})
		return
	}
	u, err := oauth.CreateUser(r.Context(), c.st, oauth.UserParams{Username: data.Username, Email: data.Email,
		Name: data.Name, Password: f.Get("password"), Admin: data.Admin})
	switch {
	case errors.Is(err, oauth.ErrInvalidUser):
		refuse(http.StatusBadRequest, invalidUser(err))
		return
	case errors.Is(err, store.ErrConflict):
		refuse(http.StatusConflict, map[string]string{"username": "This username is taken."})
		return
	case err != nil:
		c.Fail(w, r, op, "create user", err)
		return
	}
	c.Audit(r.Context(), op, "user.create", u.ID, map[string]any{"username": u.Username, "admin": u.Admin})
	Redirect(w, r, usersPath+"/"+u.ID, "user-created")
}

// sessionView is one of a user's sessions on their page.
type sessionView struct {
	store.Session
	Handle string
}

// consentView is one of a user's consents on their page.
type consentView struct {
	store.Consent
	ClientName string // "" if the client is gone
}

// userData fills console_user.html.
type userData struct {
	User        store.User
	Self        bool // the operator's own account
	Sessions    []sessionView
	Consents    []consentView
	PasswordErr string
}

// user loads the user of the path, or answers 404 or 503.
func (c *Console) user(w http.ResponseWriter, r *http.Request, op Operator) (store.User, bool) {
	u, err := c.st.User(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "user")
		return u, false
	} else if err != nil {
		c.Fail(w, r, op, "load user", err)
		return u, false
	}
	return u, true
}

func (c *Console) userShow(w http.ResponseWriter, r *http.Request, op Operator) {
	if u, ok := c.user(w, r, op); ok {
		c.renderUser(w, r, op, http.StatusOK, u, "")
	}
}

// renderUser renders a user's page with their sessions and consents.
func (c *Console) renderUser(w http.ResponseWriter, r *http.Request, op Operator, status int, u store.User, passwordErr string) {
	ctx := r.Context()
	data := userData{User: u, Self: u.ID == op.ID, PasswordErr: passwordErr}
	sessions, err := c.st.SessionsByUser(ctx, u.ID, c.now())
	if err != nil {
		c.Fail(w, r, op, "user sessions", err)
		return
	}
	for _, s := range sessions {
		data.Sessions = append(data.Sessions, sessionView{Session: s, Handle: s.Handle()})
	}
	consents, err := c.st.Consents(ctx, u.ID)
	if err != nil {
		c.Fail(w, r, op, "user consents", err)
		return
	}
	for _, con := range consents {
		v := consentView{Consent: con}
		if cl, err := c.st.Client(ctx, con.ClientID); err == nil {
			v.ClientName = cl.Name
		}
		data.Consents = append(data.Consents, v)
	}
	p := Page{Title: "User " + u.Username, Section: "users", Data: data}
	if passwordErr != "" {
		p.Error = "The password was not changed."
	}
	c.Render(w, r, status, "user", op, p)
}

func (c *Console) userPassword(w http.ResponseWriter, r *http.Request, op Operator) {
	u, ok := c.user(w, r, op)
	if !ok {
		return
	}
	pw := r.PostForm.Get("password")
	if pw != r.PostForm.Get("password2") {
		c.renderUser(w, r, op, http.StatusBadRequest, u, "The passwords do not match.")
		return
	}
	_, err := oauth.SetUserPassword(r.Context(), c.st, u.ID, pw)
	switch {
	case errors.Is(err, oauth.ErrInvalidUser):
		var msg string
		for _, m := range invalidUser(err) {
			msg = m
		}
		c.renderUser(w, r, op, http.StatusBadRequest, u, msg)
		return
	case errors.Is(err, store.ErrNotFound):
		c.NotFound(w, r, op, "user")
		return
	case err != nil:
		c.Fail(w, r, op, "reset password", err)
		return
	}
	c.Audit(r.Context(), op, "user.reset_password", u.ID, nil)
	Redirect(w, r, usersPath+"/"+u.ID, "password-reset")
}

// setDisabled disables or enables the user of the path.
func (c *Console) setDisabled(w http.ResponseWriter, r *http.Request, op Operator, disabled bool) {
	id := r.PathValue("id")
	if disabled && id == op.ID {
		c.Error(w, r, op, http.StatusBadRequest, "Not allowed",
			"You cannot disable your own account: ask another operator. Nothing was changed.")
		return
	}
	u, err := oauth.SetUserDisabled(r.Context(), c.st, id, disabled)
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "user")
		return
	} else if err != nil {
		c.Fail(w, r, op, "disable user", err)
		return
	}
	event, done := "user.enable", "user-enabled"
	if disabled {
		event, done = "user.disable", "user-disabled"
	}
	c.Audit(r.Context(), op, event, u.ID, nil)
	Redirect(w, r, usersPath+"/"+u.ID, done)
}

func (c *Console) userDisable(w http.ResponseWriter, r *http.Request, op Operator) {
	c.setDisabled(w, r, op, true)
}

func (c *Console) userEnable(w http.ResponseWriter, r *http.Request, op Operator) {
	c.setDisabled(w, r, op, false)
}

func (c *Console) userDelete(w http.ResponseWriter, r *http.Request, op Operator) {
	id := r.PathValue("id")
	if id == op.ID {
		c.Error(w, r, op, http.StatusBadRequest, "Not allowed",
			"You cannot delete your own account: ask another operator. Nothing was changed.")
		return
	}
	err := c.st.DeleteUser(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "user")
		return
	} else if err != nil {
		c.Fail(w, r, op, "delete user", err)
		return
	}
	c.Audit(r.Context(), op, "user.delete", id, nil)
	Redirect(w, r, usersPath, "user-deleted")
}

func (c *Console) userEndSession(w http.ResponseWriter, r *http.Request, op Operator) {
	u, ok := c.user(w, r, op)
	if !ok {
		return
	}
	sessions, err := c.st.SessionsByUser(r.Context(), u.ID, c.now())
	if err != nil {
		c.Fail(w, r, op, "user sessions", err)
		return
	}
	handle := r.PathValue("handle")
	for _, s := range sessions {
		if s.Handle() != handle {
			continue
		}
		err := c.st.DeleteUserSession(r.Context(), u.ID, s.IDHash)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.Fail(w, r, op, "end session", err)
			return
		}
		c.Audit(r.Context(), op, "session.end", u.ID, map[string]any{"session": handle})
		Redirect(w, r, usersPath+"/"+u.ID, "session-ended")
		return
	}
	c.NotFound(w, r, op, "session of this user")
}

func (c *Console) userEndSessions(w http.ResponseWriter, r *http.Request, op Operator) {
	u, ok := c.user(w, r, op)
	if !ok {
		return
	}
	n, err := c.st.DeleteUserSessionsExcept(r.Context(), u.ID, nil)
	if err != nil {
		c.Fail(w, r, op, "end sessions", err)
		return
	}
	c.Audit(r.Context(), op, "session.end_all", u.ID, map[string]any{"count": n})
	Redirect(w, r, usersPath+"/"+u.ID, "sessions-ended")
}

func (c *Console) userRevokeConsent(w http.ResponseWriter, r *http.Request, op Operator) {
	id, client := r.PathValue("id"), r.PathValue("client")
	err := c.st.DeleteConsent(r.Context(), id, client)
	if errors.Is(err, store.ErrNotFound) {
		c.NotFound(w, r, op, "consent")
		return
	} else if err != nil {
		c.Fail(w, r, op, "revoke consent", err)
		return
	}
	c.Audit(r.Context(), op, "consent.revoke", id, map[string]any{"client_id": client})
	Redirect(w, r, usersPath+"/"+id, "consent-revoked")
}
