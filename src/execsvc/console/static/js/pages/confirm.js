// The confirmation dialog for consequential actions: resolves to the typed reason, or null when cancelled.
export function confirmAction(text, defaultReason = "") {
  const dialog = document.getElementById("confirm");
  const reason = document.getElementById("confirm-reason");
  document.getElementById("confirm-text").textContent = text;
  reason.value = defaultReason;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? reason.value.trim() : null), {
      once: true,
    });
    dialog.returnValue = "";
    dialog.showModal();
    reason.focus();
  });
}
