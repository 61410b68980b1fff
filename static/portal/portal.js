// Keyboard and small conveniences for the agent's screens. Everything works without it
// except the confirmation dialog and live updates.
(function () {
  "use strict";

  // A key is a shortcut only when the agent is not typing and holds no modifier (Shift aside, which
  // "?" needs): Ctrl/Alt/Meta combinations belong to the browser and the system.
  function isTyping(target) {
    const tag = (target.tagName || "").toLowerCase();
    return ["input", "textarea", "select"].includes(tag) || target.isContentEditable;
  }
  function openDialog() { return document.querySelector("dialog[open]"); }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey || isTyping(event.target)) return;
    if (event.key === "/") {  // the search box, from anywhere
      const box = document.getElementById("global-search");
      if (box) { event.preventDefault(); box.focus(); box.select(); }
      return;
    }
    if (openDialog()) return;  // inside a dialog, keys belong to it
    if (event.key === "s") {  // the session page: open the stop dialog
      const button = document.getElementById("stop-button");
      if (!button) return;
      event.preventDefault();
      if (!button.disabled) { button.click(); return; }
      const why = document.getElementById("stop-blocker");  // say why it cannot be used
      if (why) why.focus();
    } else if (event.key === "?") {
      const help = document.getElementById("shortcuts-dialog");
      if (help) { event.preventDefault(); opener = document.activeElement; help.showModal(); }
    }
  });

  // Dialogs: a native <dialog> traps focus and closes on Esc; we focus the first field with an
  // error (or the first field) and give focus back to what opened it.
  let opener = null;
  function focusFirstField(dialog) {
    const first = dialog.querySelector("[aria-invalid=true]") || dialog.querySelector("select, input, textarea");
    if (first) first.focus();
  }
  document.addEventListener("click", function (event) {
    const open = event.target.closest("[data-dialog-open]");
    if (open && !open.disabled) {
      const dialog = document.getElementById(open.dataset.dialogOpen);
      if (dialog) {
        opener = open;
        dialog.showModal();
        focusFirstField(dialog);
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
      const label = copy.dataset.label || "Copy";
      navigator.clipboard.writeText(copy.dataset.copy).then(function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = label; }, 1500);
      });
    }
  });
  document.addEventListener("close", function (event) {
    if (event.target.tagName !== "DIALOG") return;
    if (opener && document.contains(opener) && !opener.disabled) opener.focus();
    else {  // the opener was replaced (the stop area swapped): the stop's answer or its status
      const next = document.querySelector("#stop-area .notice, #stop-blocker, #stop-status, #stuck-announce .notice");
      if (next) { if (!next.hasAttribute("tabindex")) next.setAttribute("tabindex", "-1"); next.focus(); }
    }
  }, true);

  // The stop form answers in place: with field errors it replaces itself inside the open dialog
  // (focus the first error); otherwise the server answers in the stop area and sends
  // "stop-dialog-done" (HX-Trigger-After-Settle): close the dialog, focus the answer.
  document.addEventListener("htmx:afterSettle", function (event) {
    const form = event.detail.elt;
    if (form && form.id === "stop-form") {
      const dialog = form.closest("dialog");
      if (dialog && dialog.open && form.querySelector("[aria-invalid=true]")) focusFirstField(dialog);
    }
  });
  document.body.addEventListener("stop-dialog-done", function () {
    opener = null;
    const dialog = document.getElementById("stop-dialog");
    if (dialog && dialog.open) dialog.close();  // the close handler moves focus to the answer
  });

  // The stuck queue's "Send stop again": the server fills #stop-dialog with the session page's
  // confirmation and asks for it to open ("stop-dialog-open", HX-Trigger-After-Settle, fired on the
  // button that asked): open it, focus the reason, and give focus back to that button on Esc.
  document.body.addEventListener("stop-dialog-open", function (event) {
    const dialog = document.getElementById("stop-dialog");
    if (!dialog) return;
    opener = event.target instanceof Element && event.target !== document.body ? event.target : null;
    if (!dialog.open) dialog.showModal();
    focusFirstField(dialog);
  });

  // Elapsed time since the request, ticking between the server's refreshes ("1 min 05 s").
  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + String(seconds % 60).padStart(2, "0") + " s";
    return Math.floor(seconds / 3600) + " h " + String(Math.floor(seconds % 3600 / 60)).padStart(2, "0") + " min";
  }
  setInterval(function () {
    document.querySelectorAll("[data-elapsed-since][data-ticking]").forEach(function (element) {
      const since = Date.parse(element.dataset.elapsedSince);
      if (!isNaN(since)) element.textContent = span((Date.now() - since) / 1000);
    });
  }, 1000);
})();
