// Kenning console: small enhancements. Every page works without this file.
"use strict";

// Scale a photo down in the browser so it uploads quickly on a slow
// connection; smaller photos are sent as they are.
function downscale(file, maxSide) {
  return new Promise(function (resolve) {
    if (!file || !/^image\//.test(file.type)) { resolve(file); return; }
    var url = URL.createObjectURL(file);
    var img = new Image();
    img.onload = function () {
      var w = img.naturalWidth, h = img.naturalHeight, scale = maxSide / Math.max(w, h);
      URL.revokeObjectURL(url);
      if (scale >= 1) { resolve(file); return; }
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (blob) {
        if (!blob) { resolve(file); return; }
        resolve(new File([blob], file.name, { type: "image/jpeg", lastModified: Date.now() }));
      }, "image/jpeg", 0.88);
    };
    img.onerror = function () { URL.revokeObjectURL(url); resolve(file); };
    img.src = url;
  });
}

function replaceFiles(input, files) {
  var dt = new DataTransfer();
  files.forEach(function (f) { dt.items.add(f); });
  input.files = dt.files;
}

document.querySelectorAll("form[data-downscale]").forEach(function (form) {
  var maxSide = parseInt(form.getAttribute("data-downscale"), 10) || 1280;
  form.addEventListener("submit", function (ev) {
    if (form.dataset.ready === "1") { return; }
    ev.preventDefault();
    var status = form.querySelector("[data-status]");
    if (status) { status.textContent = "Preparing the photo…"; }
    var inputs = Array.prototype.slice.call(form.querySelectorAll("input[type=file]"));
    Promise.all(inputs.map(function (input) {
      return Promise.all(Array.prototype.map.call(input.files, function (f) { return downscale(f, maxSide); }))
        .then(function (files) { if (files.length) { replaceFiles(input, files); } });
    })).then(function () {
      if (status) { status.textContent = "Sending…"; }
      form.dataset.ready = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      form.submit();
    });
  });
});

// Photo inputs stay closed until the fields the policy requires are filled
// in, so nobody opens the camera before saying what the search is for.
document.querySelectorAll("[data-needs]").forEach(function (input) {
  var ids = input.getAttribute("data-needs").split(/\s+/).filter(Boolean);
  var fields = ids.map(function (id) { return document.getElementById(id); }).filter(Boolean);
  var hint = document.getElementById(input.getAttribute("data-needs-hint") || "");
  function update() {
    var ok = fields.every(function (f) { return f.value.trim().length > 0; });
    input.disabled = !ok;
    if (hint) { hint.hidden = ok; }
  }
  fields.forEach(function (f) { f.addEventListener("input", update); });
  update();
});

// A preview of the chosen photo next to the form.
document.querySelectorAll("input[type=file][data-preview]").forEach(function (input) {
  var img = document.getElementById(input.getAttribute("data-preview"));
  input.addEventListener("change", function () {
    if (!img || !input.files.length) { return; }
    img.src = URL.createObjectURL(input.files[0]);
    img.hidden = false;
  });
});

// Submit a photo as soon as it is taken or chosen (the button stays for
// keyboards and for changing one's mind).
document.querySelectorAll("input[type=file][data-autosubmit]").forEach(function (input) {
  input.addEventListener("change", function () {
    if (input.files.length && input.form) { input.form.requestSubmit(); }
  });
});

document.querySelectorAll("[data-print]").forEach(function (b) {
  b.hidden = false;
  b.addEventListener("click", function () { window.print(); });
});

// A page that follows a running job reloads itself until the job is done.
document.querySelectorAll("[data-reload]").forEach(function (el) {
  var seconds = parseInt(el.getAttribute("data-reload"), 10) || 5;
  setTimeout(function () { window.location.reload(); }, seconds * 1000);
});
