// Confirm dialogs of the console: a form with data-confirm="question"
// asks before it is submitted. Without JavaScript the form submits
// directly, so every destructive action still works (and is still
// protected by its CSRF token).
"use strict";
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (e) {
    if (!window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  });
});
