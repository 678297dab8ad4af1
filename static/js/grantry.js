// Small progressive enhancements; every page works without them.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const target = document.getElementById(button.dataset.copyTarget);
  if (!target) return;
  navigator.clipboard.writeText(target.innerText.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});
// A <select data-autosubmit> submits its form when changed (the org switcher).
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-autosubmit]");
  if (select && select.form) select.form.submit();
});
// Replaces inline onchange handlers, which the Content-Security-Policy forbids.
document.addEventListener("change", (event) => {
  const field = event.target.closest("[data-autosubmit]");
  if (field && field.form) field.form.requestSubmit();
});
// Parts of a form that belong to one choice: <fieldset data-show-when="kind=syslog">
// shows only while the form's `kind` is "syslog". Without JavaScript every part shows.
function syncShowWhen(root) {
  root.querySelectorAll("[data-show-when]").forEach((part) => {
    const [name, value] = part.dataset.showWhen.split("=");
    const form = part.closest("form");
    const field = form && form.elements.namedItem(name);
    if (!field) return;
    part.hidden = field.value !== value;
  });
}
document.addEventListener("change", (event) => {
  if (event.target.form) syncShowWhen(event.target.form);
});
document.addEventListener("DOMContentLoaded", () => syncShowWhen(document));
