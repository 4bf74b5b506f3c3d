// mountsync status page: keep the sections current without a reload, and run actions in place.
// The server long-polls the change feed; this loop only asks "anything new since this digest?".
(function () {
  "use strict";
  var main = document.getElementById("content");
  var live = document.getElementById("live");
  var notice = document.getElementById("notice");
  if (!main) { return; }
  var digest = main.getAttribute("data-digest") || "";

  function setLive(ok) {
    live.textContent = ok ? "live" : "reconnecting…";
    live.classList.toggle("stale", !ok);
  }

  function hideBrokenThumbs(root) {
    // A version the storage cannot serve (a local directory, an unversioned bucket) answers 409.
    root.querySelectorAll("img.thumb").forEach(function (img) {
      if (img.complete && img.naturalWidth === 0) { img.classList.add("missing"); }
      img.addEventListener("error", function () { img.classList.add("missing"); });
    });
  }

  function swap(html) {
    // Keep keyboard focus on the same control (ids are stable) across the swap.
    var focused = document.activeElement && document.activeElement.id;
    main.innerHTML = html;
    hideBrokenThumbs(main);
    if (focused) {
      var again = document.getElementById(focused);
      if (again) { again.focus(); }
    }
  }

  var controller = null;

  function poll() {
    controller = new AbortController();
    fetch("/ui/updates?digest=" + encodeURIComponent(digest) + "&wait=25",
          { credentials: "same-origin", signal: controller.signal })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/"); return null; }
        if (response.status === 204) { setLive(true); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) {
        if (body) { digest = body.digest; swap(body.html); setLive(true); }
        setTimeout(poll, 0);
      })
      .catch(function (error) {
        if (error.name === "AbortError") { return; }  // refreshNow started a new poll
        setLive(false);
        setTimeout(poll, 3000);
      });
  }

  function refreshNow() {
    digest = "";
    if (controller) { controller.abort(); }
    poll();
  }

  // Actions: POST the form (it carries the CSRF token), say what happened, refresh at once.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("action")) { return; }
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) { button.disabled = true; }
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                         headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json().catch(function () { return {}; }); })
      .then(function (body) { notice.textContent = body.message || body.error || ""; refreshNow(); })
      .catch(function () { notice.textContent = "The action could not be sent; is serve running?"; })
      .finally(function () { if (button) { button.disabled = false; } });
  });

  hideBrokenThumbs(main);
  poll();
})();
