// The playground: Run streams each model's output into its column (server-sent events read
// from a fetch), and adding or removing a message or a model swaps the form in place. Without
// this script the same form posts and the server answers with whole pages.
(function () {
  "use strict";

  function flash(message) {
    var box = document.getElementById("flash");
    if (!box) { return; }
    box.innerHTML = "";
    var p = document.createElement("p");
    p.className = "error-box";
    p.setAttribute("role", "alert");
    p.textContent = message;
    box.appendChild(p);
  }

  function formData(form, submitter) {
    var data = new FormData(form);
    if (submitter && submitter.name) { data.set(submitter.name, submitter.value); }
    return data;
  }

  // A page the server answered with (the form with its errors, or an error page).
  function showPage(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("playground-form");
    var form = document.getElementById("playground-form");
    if (fresh && form) {
      form.replaceWith(fresh);
      if (window.htmx) { window.htmx.process(fresh); }
      var invalid = fresh.querySelector("[aria-invalid=true]");
      if (invalid) { invalid.focus(); }
      return;
    }
    var message = doc.querySelector("main p") || doc.querySelector("h1");
    flash(message ? message.textContent : "The server could not do that.");
  }

  function running(form, on) {
    var button = form.querySelector(".pg-run");
    var note = form.querySelector(".pg-running");
    if (button) { button.disabled = on; }
    if (note) { note.hidden = !on; }
  }

  function column(index) {
    return document.querySelector('#results [data-column="' + index + '"]');
  }

  function handle(name, data) {
    var results = document.getElementById("results");
    var target;
    if (name === "columns") {
      results.innerHTML = data.html;
      if (results.scrollIntoView) { results.scrollIntoView({ block: "nearest" }); }
    } else if (name === "delta") {
      target = column(data.column);
      if (target) { target.querySelector(".pg-output").textContent += data.text; }
    } else if (name === "end") {
      target = column(data.column);
      if (target) {
        target.querySelector(".pg-output").textContent = data.output;
        target.querySelector(".pg-end").innerHTML = data.html;
        target.classList.add("pg-done");
      }
    } else if (name === "failed") {
      flash(data.message);
    }
  }

  async function run(form, data) {
    running(form, true);
    try {
      var response = await fetch(form.getAttribute("data-stream"), {
        method: "POST", body: data, headers: { "Accept": "text/event-stream" }
      });
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("text/event-stream") !== 0) {
        showPage(await response.text());
        return;
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) { break; }
        buffer += decoder.decode(chunk.value, { stream: true });
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          var name = "message", payload = "";
          block.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) { name = line.slice(7); }
            else if (line.indexOf("data: ") === 0) { payload += line.slice(6); }
          });
          handle(name, payload ? JSON.parse(payload) : {});
        }
      }
    } catch (error) {
      flash("The run was cut off: " + error + ". Its logs hold what the models answered.");
    } finally {
      running(document.getElementById("playground-form"), false);
    }
  }

  async function reshape(form, data) {
    try {
      var response = await fetch(form.getAttribute("action"), { method: "POST", body: data });
      showPage(await response.text());
    } catch (error) {
      flash("The server cannot be reached.");
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "playground-form" || !window.fetch) { return; }
    var submitter = event.submitter;
    var action = submitter && submitter.name === "action" ? submitter.value : "run";
    if (action === "save") { return; }  // htmx posts it (hx-post on the button)
    event.preventDefault();
    var data = formData(form, submitter);
    data.set("action", action);
    if (action === "run") { run(form, data); } else { reshape(form, data); }
  });
})();
