// Keyboard and small conveniences for the agent's screens. Everything works without it
// except the confirmation dialog and live updates.
(function () {
  "use strict";

  // "/" focuses the search box from anywhere (not while typing in a field).
  document.addEventListener("keydown", function (event) {
    const tag = (event.target.tagName || "").toLowerCase();
    if (event.key === "/" && !["input", "textarea", "select"].includes(tag) && !event.target.isContentEditable) {
      const box = document.getElementById("global-search");
      if (box) { event.preventDefault(); box.focus(); box.select(); }
    }
  });

  // The stop dialog: a native <dialog> traps focus and closes on Esc; we focus the reason first
  // and give focus back to the button that opened it.
  let opener = null;
  document.addEventListener("click", function (event) {
    const open = event.target.closest("[data-dialog-open]");
    if (open && !open.disabled) {
      const dialog = document.getElementById(open.dataset.dialogOpen);
      if (dialog) {
        opener = open;
        dialog.showModal();
        const first = dialog.querySelector("select, input, textarea");
        if (first) first.focus();
      }
      return;
    }
    if (event.target.closest("[data-dialog-close]")) {
      const dialog = event.target.closest("dialog");
      if (dialog) dialog.close();
      return;
    }
    const copy = event.target.closest("button.copy");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(copy.dataset.copy).then(function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy"; }, 1500);
      });
    }
  });
  document.addEventListener("close", function (event) {
    if (event.target.tagName === "DIALOG" && opener && document.contains(opener)) opener.focus();
  }, true);

  // After the stop is submitted, close the dialog, then move focus to the live status.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const button = event.detail.elt.querySelector && event.detail.elt.querySelector("button[type=submit]");
    if (event.detail.elt.closest("dialog") && button) button.disabled = true;  // no double submit
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    const dialog = event.detail.elt.closest && event.detail.elt.closest("dialog");
    if (dialog) {
      dialog.close();
      dialog.remove();
      const status = document.getElementById("stop-status");
      if (status) { status.setAttribute("tabindex", "-1"); status.focus(); }
    }
  });
})();
