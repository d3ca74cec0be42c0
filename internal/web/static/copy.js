// The copy button of the API keys page: copies the new key to the
// clipboard. Without JavaScript the key can still be selected and copied.
"use strict";
document.querySelectorAll("button[data-copy-from]").forEach(function (btn) {
  btn.addEventListener("click", function () {
    var input = document.getElementById(btn.dataset.copyFrom);
    var status = document.getElementById("copy-status");
    input.select();
    function done(ok) {
      if (status) { status.textContent = ok ? "Copied." : "Press Ctrl+C (or ⌘C) to copy."; }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { done(false); });
    } else {
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
  });
});
