// Berth console: progressive enhancement only — every page works without this script.
// Adds a "Copy" button after each element marked data-copy (repository URIs, push commands).
(function () {
  "use strict";
  if (!navigator.clipboard) {
    return;
  }
  document.querySelectorAll("[data-copy]").forEach(function (el) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy " + (el.getAttribute("data-copy") || "text"));
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(el.textContent.trim()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
    el.insertAdjacentElement("afterend", button);
  });
})();
